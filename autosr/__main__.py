"""``python -m autosr`` (and ``torchrun -m autosr``): the same command line as the ``autosr`` script."""

from autosr.cli import app

if __name__ == "__main__":
    app(prog_name="autosr")
