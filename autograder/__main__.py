"""``python -m autograder {grade,check,batch,gradescope}``; see ``autograder.cli``."""

from autograder.cli import main

raise SystemExit(main())
