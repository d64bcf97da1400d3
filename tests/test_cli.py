import subprocess
import sys

from pipeline.cli import build_parser


def test_help_imports_no_heavy_library():
    # `edn --help` must answer at once: no torch, mediapipe, cv2, numpy or pandas at import.
    code = ("import sys, contextlib, io\n"
            "from pipeline.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n"
            "heavy = [m for m in ('torch', 'mediapipe', 'cv2', 'numpy', 'pandas') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_stage_has_a_subcommand():
    parser = build_parser()
    stages = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    for stage in ("fetch-demo", "extract", "detect", "smooth", "stats", "normalize", "render"):
        assert stage in stages
