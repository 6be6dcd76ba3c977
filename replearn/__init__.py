"""replearn: the course library of *Representation learning in vision*.

Everything that is not the student's job lives here: data (`replearn.data`), batched
augmentations (`replearn.augment`), backbones and real pretrained networks
(`replearn.backbones`), one training loop (`replearn.train`), the transfer protocols of the
lecture (`replearn.evaluate`), plots (`replearn.viz`), presets (`replearn.presets`), loading the
student's or the reference implementation (`replearn.impl`), the notebook set-up cell
(`replearn.notebook`), the student's submission zip (`replearn.submit`) and the submission
contract it shares with the grader (`replearn.contract`). It never imports the grader or the
instructor tooling.

Shape legend used in every docstring and comment: N batch, C channels, H x W pixels,
L tokens, D feature width, K classes / clusters / queue entries, p patch side, T text tokens.
Images are float32 in [0, 1], ``[N, C, H, W]``; labels are int64 ``[N]``.
"""

__version__ = "0.1.0"
