"""The submission contract: what the student's packager and the grader must agree on, once.

``replearn.submit`` (the student's side) and ``autograder`` (the grader's side) both import these
modules, and nothing here imports either of them, so a rule changes in one place:

* :mod:`~replearn.contract.assignments`: which assignments exist (names, aliases, modules, time
  limits) and where each one's tests, reference and starter live;
* :mod:`~replearn.contract.files`: what a submission may hold (file names and types, size
  limits) and the deterministic zip writer;
* :mod:`~replearn.contract.artefacts`: the artefacts an assignment asks for and the checked
  safetensors reader;
* :mod:`~replearn.contract.notebooks`: the run records an executed notebook carries, and its
  written answers;
* :mod:`~replearn.contract.manifest`: the submission's ``MANIFEST.json`` (name, format, limits);
* :mod:`~replearn.contract.markers`: the solution and hidden-test marker lines.

No module here imports torch when it is imported: the packager runs in a notebook's last cell
and the grader's parent reads untrusted files with these rules.
"""
