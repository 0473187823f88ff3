"""Deploying a solution version into a folder: the preflight (``preflight``),
the recorded, undoable steps (``steps``), the engine that runs them under a
lease (``engine``), the entry points pages and API call (``actions``) and
the worker tasks (``tasks``)."""
