"""``python -m autograder {grade,check,answers,batch,record}``; see ``autograder.cli``."""

from autograder.cli import main

raise SystemExit(main())
