"""Static, offline HTML viewer of logged rollouts (``mhpo-vl view``) and eval samples (``mhpo-eval view``).

    from mhpo_vl.viewer import build_run_viewer
    build_run_viewer("runs/demo/rl", out="runs/demo/rl/viewer")   # -> .../index.html + images/
"""


def build_run_viewer(run_dir, out=None):
    """See :func:`mhpo_vl.viewer.run_view.build_run_viewer`."""
    from mhpo_vl.viewer.run_view import build_run_viewer as _build

    return _build(run_dir, out)


def build_eval_viewer(runs, out):
    """See :func:`mhpo_vl.viewer.eval_view.build_eval_viewer`."""
    from mhpo_vl.viewer.eval_view import build_eval_viewer as _build

    return _build(runs, out)


__all__ = ["build_eval_viewer", "build_run_viewer"]
