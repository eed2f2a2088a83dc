"""Options and helpers shared by several commands."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn, Optional

import typer
from wasabi import msg

from ..bilm import BiLM, ModelFiles, OptionsError, WeightFileError, load_bilm, resolve_model_files
from ..atomic import remove_live_temporaries
from ..bilm.device import MAX_THREADS, DeviceError, parse_device
from ..default_model import default_model_dir

ModelOpt = typer.Option(
    None, "--model", "-m", help="Model directory (options.json + weights.hdf5), or a published model's name such as allennlp:small (spacy-elmo models)."
)
OptionsFileOpt = typer.Option(None, "--options-file", help="ELMo options.json (use with --weight-file).")
WeightFileOpt = typer.Option(None, "--weight-file", help="ELMo HDF5 weight file (use with --options-file).")
DeviceOpt = typer.Option("cpu", "--device", help="Torch device: cpu, cuda, cuda:1, ...")
ThreadsOpt = typer.Option(
    0, "--threads", min=0, max=MAX_THREADS,
    help="Torch CPU threads (0: torch's default, all cores). On a machine busy with other work, 1 is often faster.",
)


def use_threads(threads: int) -> None:
    """Apply --threads: 0 leaves torch's default alone."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def load_model_or_exit(
    model: Optional[Path], options_file: Optional[Path], weight_file: Optional[Path], device: str = "cpu"
) -> tuple[BiLM, ModelFiles]:
    """Load a biLM from the command-line options (the shipped default model when none is given).

    A bad model is a one-line error, not a traceback. Returns the model and where it came from.
    """
    if model is None and options_file is None and weight_file is None:
        model = default_model_dir()
        if model is None:
            msg.fail("No model given and no default model is installed: pass --model DIR or --options-file F --weight-file F", exits=1)
    check_device_or_exit(device)
    try:
        files = resolve_model_files(model, options_file, weight_file)
        files.meta()  # an unreadable meta.json is reported here, with the other bad-model errors
        return load_bilm(options_file=files.options_file, weight_file=files.weight_file, device=device), files
    except (OptionsError, WeightFileError, ValueError) as err:
        msg.fail(str(err), exits=1)
        raise  # not reached: msg.fail exits; keeps type checkers from seeing a missing return
    except KeyboardInterrupt:  # Ctrl-C, e.g. during a published model's first download
        exit_interrupted(
            f"Interrupted while loading {model or weight_file}; a download of a published model that was "
            f"under way is kept in the model cache and resumes when you run the command again"
        )


def exit_interrupted(what_is_kept: str) -> NoReturn:
    """Ctrl-C: one line saying what is kept and how to go on, then exit status 130 (as the shell
    reports an interrupt), rather than a traceback or silence."""
    msg.warn(what_is_kept)
    raise typer.Exit(130)


def check_device_or_exit(device: str) -> None:
    """An unknown device, or one this machine lacks, is a one-line error before any work."""
    try:
        parse_device(device)
    except DeviceError as err:
        msg.fail(f"--device: {err}", exits=1)


# ---- output paths: checked before the work, so that hours of work never end in a traceback ------


def check_output_or_exit(problem: str | None) -> None:
    if problem is not None:
        msg.fail(problem, exits=1)


# ---- SIGTERM ----------------------------------------------------------------------------------


def _terminate(signum, frame) -> None:
    # Remove the temporaries here rather than raise SystemExit: an exception raised where the signal
    # lands could be swallowed (in a __del__, a callback) and the run would go on.
    remove_live_temporaries()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(128 + signum)


@contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM (kill, timeout, a batch scheduler) first removes every temporary
    file or folder this process is writing (spacy_elmo/atomic.py), then exits with status 143 as the
    signal would. Finished outputs, checkpoints included, are never touched."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. not in CliRunner threads)
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
