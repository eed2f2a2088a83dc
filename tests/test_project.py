"""project.yml: it loads, the two workflows run the same steps, every dependency is made by an
earlier step or present, the demo never writes where the full run does, and the assets name
public sources whose checksums match the local copies in ../shared/data."""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_VAR = "DATA_DIR_PLACEHOLDER"  # data_dir substituted to this, to tell data deps apart


def load(overrides: dict | None = None) -> dict:
    """project.yml, read from a copy: weasel creates the project's `directories` where it reads it."""
    from weasel.util import load_project_config

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "project.yml", tmp)
        return load_project_config(Path(tmp), overrides=overrides or {})


def test_reading_the_project_leaves_no_empty_folders_in_the_checkout():
    before = sorted(p.name for p in ROOT.iterdir())
    load()
    assert sorted(p.name for p in ROOT.iterdir()) == before


@pytest.fixture(scope="module")
def project() -> dict:
    return load({"vars.data_dir": DATA_VAR})


def commands(project: dict) -> dict[str, dict]:
    return {c["name"]: c for c in project["commands"]}


def test_loads_and_has_both_workflows(project):
    assert set(project["workflows"]) >= {"all", "demo"}
    names = commands(project)
    for workflow, steps in project["workflows"].items():
        assert steps, workflow
        for step in steps:
            assert step in names, f"workflow {workflow}: no command {step}"


def test_demo_runs_the_same_steps(project):
    assert project["workflows"]["demo"] == ["demo-" + step for step in project["workflows"]["all"]]
    expected = [
        "corpus-pretrain", "pretrain", "evaluate-perplexity", "export", "corpus-ner", "finetune-bilm", "train-ner-baseline",
        "train-ner-elmo", "evaluate-ner", "evaluate-ner-precision", "train-ner-seeds", "corpus-ner-curve", "train-ner-curve", "static-vectors", "train-ner-vectors",
        "train-ner-vectors-seeds", "corpus-textcat", "train-textcat", "train-textcat-seeds", "evaluate-stsb", "evaluate-wic", "evaluate-polysemy", "package", "report",
    ]
    assert project["workflows"]["all"] == expected


@pytest.mark.parametrize("workflow", ["all", "demo"])
def test_every_dependency_is_made_earlier_or_present(project, workflow):
    names = commands(project)
    made: set[str] = set()
    assets = {a["dest"] for a in project["assets"]}
    for step in project["workflows"][workflow]:
        cmd = names[step]
        assert cmd.get("outputs"), f"{step}: no outputs, so reruns could not skip it"
        for dep in cmd.get("deps", []):
            if dep.startswith(DATA_VAR):
                assert dep in assets, f"{step}: data dependency {dep} is not an asset"
            elif dep not in made:
                assert (ROOT / dep).exists(), f"{step}: {dep} is neither made by an earlier step nor in the repo"
        made.update(cmd["outputs"])


def test_the_demo_never_writes_where_the_full_run_does(project):
    names = commands(project)
    full = {o for s in project["workflows"]["all"] for o in names[s]["outputs"]}
    demo = {o for s in project["workflows"]["demo"] for o in names[s]["outputs"]}
    assert not full & demo
    for output in demo:
        assert "/demo/" in output, output


def test_scripts_named_in_commands_exist(project):
    for cmd in project["commands"]:
        for line in cmd["script"]:
            argv = shlex.split(line)
            for arg in argv:
                if arg.startswith("scripts/"):
                    assert (ROOT / arg).is_file(), f"{cmd['name']}: {arg} missing"
                    # A changed script must rerun its step.
                    assert arg in cmd.get("deps", []), f"{cmd['name']}: {arg} is not a dependency"


def test_every_file_the_reports_read_is_a_dependency(project):
    """Each input the report command names (other than --readme, which it writes into) is a dep of
    `report` and `demo-report`: a rerun of the step that makes it reruns the report."""
    names = commands(project)
    for step in ("report", "demo-report"):
        argv = shlex.split(names[step]["script"][0])
        deps = names[step]["deps"]
        for option, value in zip(argv, argv[1:]):
            if not option.startswith("--") or option in ("--readme", "--setting", "--threads"):
                continue
            path = value.split("=", 1)[1] if option == "--pipeline" else value
            assert any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps), f"{step}: {option} {path}"


def test_the_fine_tuned_copy_is_made_with_deterministic_algorithms(project):
    """The NER grids' records are fingerprinted against the fine-tuned biLM: it must come out the
    same on a rerun, which two CPU threads do not give without deterministic algorithms."""
    names = commands(project)
    for prefix in ("", "demo-"):
        (line,) = [line for line in names[prefix + "finetune-bilm"]["script"] if "spacy-elmo pretrain" in line]
        argv = shlex.split(line)
        assert argv[argv.index("--system.deterministic") + 1] == "true", prefix


def test_ner_runs_share_budget_and_seed(project):
    names = commands(project)
    for prefix in ("", "demo-"):
        base = names[prefix + "train-ner-baseline"]["script"][0]
        elmo = names[prefix + "train-ner-elmo"]["script"][0]

        def option(line, name):
            argv = shlex.split(line)
            return argv[argv.index(name) + 1]

        for name in ("--training.max_steps", "--system.seed", "--paths.train", "--paths.dev", "--gpu-id"):
            assert option(base, name) == option(elmo, name), (prefix, name)


def test_evidence_runs_share_the_ner_budget_seed_and_biLM(project):
    """The learning curve and the static-vector arms train like train-ner-*: same budget, the
    fine-tuned biLM, the same dev and test sets; the vector arms with the main runs' seed."""
    names = commands(project)
    for prefix in ("", "demo-"):
        main = shlex.split(names[prefix + "train-ner-elmo"]["script"][0])
        evaluate = shlex.split(names[prefix + "evaluate-ner"]["script"][0])

        def option(argv, name):
            return argv[argv.index(name) + 1]

        for step in ("train-ner-seeds", "train-ner-curve", "train-ner-vectors"):
            argv = shlex.split(names[prefix + step]["script"][0])
            assert option(argv, "--max-steps") == option(main, "--training.max_steps"), (prefix, step)
            assert option(argv, "--elmo-model") == option(main, "--paths.elmo_model"), (prefix, step)
            assert option(argv, "--dev") == option(main, "--paths.dev"), (prefix, step)
            assert option(argv, "--test") == evaluate[5], (prefix, step)  # python -m spacy evaluate MODEL DATA
        vectors = shlex.split(names[prefix + "train-ner-vectors"]["script"][0])
        assert option(vectors, "--seeds") == option(main, "--system.seed")
        assert option(vectors, "--train") == option(main, "--paths.train")
        seeds = shlex.split(names[prefix + "train-ner-seeds"]["script"][0])
        assert option(seeds, "--train") == option(main, "--paths.train")
        assert option(main, "--system.seed") not in option(seeds, "--seeds").split(","), "the main pair is a seed of its own"
        # The vector arm on more seeds: train-ner-vectors' vector arm, line for line, on the seeds of
        # train-ner-seeds (so it pairs with ELMo alone seed by seed), into the same run and record folders.
        more = shlex.split(names[prefix + "train-ner-vectors-seeds"]["script"][0])
        for name in ("--task", "--runs", "--train", "--dev", "--test", "--vectors", "--max-steps", "--gpu-id"):
            assert option(more, name) == option(vectors, name), (prefix, name)
        assert ("--record" in more) == ("--record" in vectors)
        if "--record" in vectors:
            assert option(more, "--record") == option(vectors, "--record")
        assert option(more, "--seeds") == option(seeds, "--seeds")
        assert [more[i + 1] for i, a in enumerate(more) if a == "--arm"] == [
            vectors[i + 1] for i, a in enumerate(vectors) if a == "--arm" and vectors[i + 1].startswith("vectors=")]
        # Text classification: the seed step trains the main grid's baseline and ELMo arms, line for
        # line, on other seeds, into the same run and record folders (a run is never trained twice).
        for main_line, seeds_line in zip(names[prefix + "train-textcat"]["script"], names[prefix + "train-textcat-seeds"]["script"]):
            main_argv, seeds_argv = shlex.split(main_line), shlex.split(seeds_line)
            for name in ("--task", "--runs", "--train", "--dev", "--test", "--elmo-model", "--max-steps", "--gpu-id"):
                assert option(seeds_argv, name) == option(main_argv, name), (prefix, name)
            if "--record" in main_argv:
                assert option(seeds_argv, "--record") == option(main_argv, "--record")
            arms = [main_argv[i + 1] for i, a in enumerate(main_argv) if a == "--arm"]
            assert [seeds_argv[i + 1] for i, a in enumerate(seeds_argv) if a == "--arm"] == [a for a in arms if a.split("=")[0] in ("baseline", "elmo")]
            assert option(main_argv, "--seeds") not in option(seeds_argv, "--seeds").split(",")


def test_overriding_data_dir_moves_every_data_path():
    project = load({"vars.data_dir": "/elsewhere"})
    for asset in project["assets"]:
        assert asset["dest"].startswith("/elsewhere/")
    lines = [line for c in project["commands"] for line in c["script"]]
    assert not any("../shared" in line for line in lines)


def test_assets_have_public_urls_and_md5s(project):
    dests = set()
    for asset in project["assets"]:
        if "url" not in asset:  # a file made from a public release without a one-file download
            assert "place it yourself" in asset["description"], asset
        else:
            assert asset["url"].startswith("https://"), asset
        assert re.fullmatch(r"[0-9a-f]{32}", asset["checksum"]), asset
        assert asset["dest"].startswith(DATA_VAR + "/")
        assert asset["dest"] not in dests
        dests.add(asset["dest"])
    for folder in ("wikitext103", "conll2003", "stsb", "wic", "movie_reviews", "bbc_news"):
        assert any(d.startswith(f"{DATA_VAR}/{folder}/") for d in dests), folder


def test_local_copies_match_the_asset_checksums(shared_dir):
    """Where ../shared/data holds a copy, its md5 is the asset's: `spacy project assets` would
    skip it, and a reader can trust the local copy is the public file."""
    data = shared_dir / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is absent")
    project = load({"vars.data_dir": str(data)})
    checked = 0
    for asset in project["assets"]:
        path = Path(asset["dest"])
        if path.is_file():
            assert hashlib.md5(path.read_bytes()).hexdigest() == asset["checksum"], path
            checked += 1
    assert checked >= 14  # all but the WikiText-103 raw archive, which has no offline copy


def test_report_so_far_runs_the_report_command_from_whatever_exists(project):
    """A long workflow in progress: the same command as `report`, no step outputs required, never
    skipped (the report itself turns a missing input into n/a)."""
    names = commands(project)
    so_far = names["report-so-far"]
    assert so_far["script"] == names["report"]["script"]
    assert so_far["deps"] == ["scripts/report.py"]
    assert so_far.get("no_skip") is True


def test_the_workflow_constraints_pin_the_versions_the_grid_records_were_made_with():
    """constraints-workflow.txt names every package a record's reuse depends on, at the versions of
    the committed records that name theirs (a record is reused only with the same versions)."""
    import json

    from spacy_elmo.tasks.grid import ENVIRONMENT_PACKAGES

    pins = {}
    for line in (ROOT / "constraints-workflow.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    assert set(pins) == set(ENVIRONMENT_PACKAGES)
    for run in (ROOT / "reports" / "runs").rglob("run.json"):
        environment = json.loads(run.read_text()).get("environment")
        if environment is not None:
            made_with = {name: (version or "").split("+")[0] for name, version in environment["versions"].items()}
            assert made_with == pins, run


def test_committed_run_records_match_the_configs_they_name():
    """A record is reused only while its config file is unchanged (grid.run_settings): a config
    edit leaves the records of that config unusable. Such an edit must either be shown not to
    change scores (and the records moved to the new digest, as on 2026-12-04) or drop them."""
    import json

    records = sorted((ROOT / "reports" / "runs").glob("**/run.json"))
    assert records, "reports/runs/ holds the grids' records"
    stale = []
    for path in records:
        record = json.loads(path.read_text(encoding="utf-8"))
        config = ROOT / record["config"]
        if hashlib.sha256(config.read_bytes()).hexdigest() != record["config_sha256"]:
            stale.append(str(path.relative_to(ROOT)))
    assert not stale, f"records made with an earlier version of their config: {stale}"
