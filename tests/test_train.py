"""train.py end to end on a tiny random encoder: resume after a kill, 2-process DDP, errors, the Hub folder."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from corpora import load_corpus
from data_builders import split_of

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--max_train_samples", "48", "--max_validation_samples", "12", "--max_eval_samples", "12", "--max_length", "32", "--num_train_epochs", "2",
         "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--report_to", "none"]


def run_train(args, **popen):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finished(process, timeout=600):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-4000:]
    return out


def summary(folder):
    return json.loads((Path(folder) / "train_summary.json").read_text())


@pytest.mark.parametrize("layout", ["paper", "one-pass"])
def test_a_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, tiny_encoder, layout):
    common = QUICK + ["--model_name_or_path", tiny_encoder, "--checkpointing_steps", "2", "--attention_layout", layout]
    finished(run_train(common + ["--output_dir", str(tmp_path / "straight")]))

    interrupted = run_train(common + ["--output_dir", str(tmp_path / "killed")])
    first = tmp_path / "killed" / "checkpoints" / "checkpoint_1" / train.COMPLETE_MARKER
    deadline = time.time() + 300
    while not first.exists() and interrupted.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.communicate()
    assert interrupted.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    assert not (tmp_path / "killed" / "train_summary.json").exists()

    out = finished(run_train(common + ["--output_dir", str(tmp_path / "killed"), "--resume_from_checkpoint"]))
    assert "resumed from" in out
    straight, resumed = summary(tmp_path / "straight"), summary(tmp_path / "killed")
    assert resumed["epochs_trained"] == pytest.approx(straight["epochs_trained"])
    assert resumed["parameter_checksums_per_process"] == straight["parameter_checksums_per_process"]
    timeless = lambda history: [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in history]
    assert timeless(resumed["history"]) == timeless(straight["history"])
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_cpu_processes_run_real_ddp(tmp_path, tiny_encoder):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train.py")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    out_dir = tmp_path / "ddp"
    # the paper layout: a batch is 8 instances, so the sharding arithmetic below is exact (one-pass batches posts)
    done = subprocess.run(launch + QUICK + ["--model_name_or_path", tiny_encoder, "--output_dir", str(out_dir),
                                            "--num_train_epochs", "1", "--max_eval_samples", "13",
                                            "--attention_layout", "paper"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es) [DistributedType.MULTI_CPU]" in done.stdout + done.stderr
    result = summary(out_dir)
    assert result["mixed_precision"] == "no"         # --mixed_precision auto takes what accelerate launch was given
    assert result["epochs_trained"] == pytest.approx(1.0)             # each process ran half the posts
    first, second = result["parameter_checksums_per_process"]
    assert first == second                                      # gradients were synchronised
    per_process = result["train_instances_per_process"]
    assert len(per_process) == 2 and abs(per_process[0] - per_process[1]) <= 8   # the data was sharded
    # not seen twice: at most the padding that completes the last batch of each process
    assert result["instances_per_epoch"] <= sum(per_process) < result["instances_per_epoch"] + 2 * 8
    ids = [json.loads(line)["id"] for line in (out_dir / "eval_predictions.jsonl").read_text().splitlines()]
    assert len(ids) == 13 and len(set(ids)) == 13                                 # every test post once


def test_mixed_precision_scores_the_model_as_saved(tmp_path, tiny_encoder):
    """Under --mixed_precision bf16 the training steps run in autocast, but the test scores are those of the saved
    float32 model: a user who loads the folder gets the same tags and scores. BR-EF, whose generation runs
    through ``forward`` (the method accelerate wraps in autocast)."""
    from argparse import Namespace
    from transformers import AutoModel, AutoTokenizer
    from corpora import Split

    out_dir = tmp_path / "bf16"
    finished(run_train(QUICK + ["--model_name_or_path", tiny_encoder, "--output_dir", str(out_dir), "--model", "br",
                                "--num_train_epochs", "1", "--mixed_precision", "bf16"]))
    args = Namespace(**summary(out_dir)["args"])
    assert args.mixed_precision == summary(out_dir)["mixed_precision"] == "bf16"
    test = Split.of("test", train.splits_of(load_corpus(args.dataset, args.data_dir), args)[2])
    written = [json.loads(line) for line in (out_dir / "eval_predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in written] == test.data["id"]
    model = AutoModel.from_pretrained(out_dir, trust_remote_code=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    again = model.generate_tags(test.posts, AutoTokenizer.from_pretrained(out_dir, trust_remote_code=True),
                                 num_tags=args.num_tags)
    assert [[t["label"] for t in tags] for tags in again] == [[t["label"] for t in row["predicted"]] for row in written]
    assert [t["score"] for tags in again for t in tags] == pytest.approx(
        [t["score"] for row in written for t in row["predicted"]], rel=1e-5, abs=1e-6)


def test_mixed_precision_auto_is_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    assert train.parse_args(["--output_dir", "x"]).mixed_precision == "auto"
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(train, "native_bfloat16", lambda device: True)
    assert train.mixed_precision_of("auto") == "bf16"
    monkeypatch.setattr(train, "native_bfloat16", lambda device: False)
    assert train.mixed_precision_of("auto") == "no"
    assert train.mixed_precision_of("bf16") == "bf16"                     # asked for by name: as given
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")              # accelerate launch --mixed_precision fp16
    assert train.mixed_precision_of("auto") == "fp16"


def test_the_bfloat16_probe_reads_this_cpu():
    # torch's probes are private: were one renamed, auto would quietly train in float32 on a CPU that has bfloat16
    flags = Path("/proc/cpuinfo")
    if not flags.is_file():
        pytest.skip("no /proc/cpuinfo to check the probe against")
    words = set(flags.read_text().split())
    assert train.native_bfloat16(torch.device("cpu")) == bool({"avx512_bf16", "amx_bf16", "amx_tile"} & words)


def test_output_folder_is_a_hub_repo_with_a_working_handler(tmp_path, tiny_encoder, capsys):
    out_dir = tmp_path / "model"
    train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--output_dir", str(out_dir), "--num_train_epochs",
                        "1", "--push_to_hub", "--dry_run", "--checkpointing_steps", "epoch"])
    listed = capsys.readouterr().out
    uploaded = listed.split("dry run")[1]
    assert "dry run: would upload" in listed and "checkpoints" not in uploaded
    for record in ("eval_predictions.jsonl", "validation_predictions.jsonl", "train_summary.json"):
        assert (out_dir / record).exists() and record not in uploaded
    for name in ("config.json", "model.safetensors", "handler.py", "README.md", "tokenizer.json", "modeling_sog.py",
                 "pipeline_sog.py"):
        assert (out_dir / name).exists(), name
    card = (out_dir / "README.md").read_text()
    assert "model-index:" in card and "type: precision@1" in card and "widget:" in card
    assert "library_name: transformers" in card and "pipeline_tag" not in card and "- tag-generation" in card
    assert "- Attention layout: one-pass" in card and "`config.attention_layout`" in card   # train.py's default
    assert "- Lexical expert: `mix`" in card and "weight " in card
    assert "the whole post's word pieces to the tags" in card                                 # train.py's default

    code = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from handler import EndpointHandler
handler = EndpointHandler(sys.argv[1])
one = handler({"inputs": "a python library", "parameters": {"num_tags": 3}})
many = handler({"inputs": ["a python library", {"text": "a game", "location": "games"}], "parameters": {"num_tags": 2, "threshold": 0.0}})
print(json.dumps({"one": one, "many": many}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code, str(out_dir)], cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["one"]) == 3 and set(result["one"][0]) == {"label", "score", "step_probability"}
    assert [len(r) for r in result["many"]] == [2, 2]
    json.dumps(result)


def test_clear_errors(tmp_path, tiny_encoder):
    with pytest.raises(ValueError, match="neither a builder"):
        train.main(["--dataset", "no-such-thing", "--report_to", "none"])
    no_tags = tmp_path / "no_tags.jsonl"
    no_tags.write_text("\n".join(json.dumps({"id": str(i), "text": "x"}) for i in range(30)))
    with pytest.raises(ValueError, match="no 'tags' column"):
        train.main(["--dataset", str(no_tags), "--report_to", "none"])
    only_train = tmp_path / "one.jsonl"
    train_ids = [str(i) for i in range(20) if split_of(str(i)) == "train"][:3]
    only_train.write_text("\n".join(json.dumps({"id": i, "text": "x", "tags": ["a"]}) for i in train_ids))
    with pytest.raises(ValueError, match="split 'test' is empty"):
        train.main(["--dataset", str(only_train), "--report_to", "none"])
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="BERT-family"):
        train.main(QUICK + ["--model_name_or_path", str(gpt)])
    with pytest.raises(ValueError, match="tag vocabulary is empty"):
        train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--min_tag_freq", "100000"])


def test_generator_only_options_are_refused_for_ranking_models(capsys):
    for option in (["--instances_per_post", "one"], ["--tag_head", "plain"], ["--loss_weighting", "target_count"]):
        with pytest.raises(SystemExit):
            train.parse_args(["--model", "br"] + option)
        assert "apply to generators (sog, ar), not --model br" in capsys.readouterr().err
    assert train.parse_args(["--model", "ar", "--instances_per_post", "one"]).instances_per_post == "one"
    with pytest.raises(SystemExit):
        train.parse_args(["--model", "br", "--step_loss", "sigmoid"])
    assert "--step_loss applies to generators (sog, ar), not --model br" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--step_loss", "sigmoid", "--loss_weighting", "target_count"])
    assert "weights the softmax step loss" in capsys.readouterr().err
    assert train.parse_args(["--model", "sog", "--step_loss", "sigmoid"]).step_loss == "sigmoid"
    for refused in (["--model", "ar"], ["--model", "br"], ["--step_loss", "sigmoid"], ["--scheme", "1-to-1"]):
        with pytest.raises(SystemExit):
            train.parse_args(refused + ["--first_step_sigmoid_weight", "1"])
        assert "--first_step_sigmoid_weight adds BR's objective" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--first_step_sigmoid_weight", "-1"])
    assert "--first_step_sigmoid_weight must be 0 (off) or more" in capsys.readouterr().err
    assert train.parse_args(["--first_step_sigmoid_weight", "0.5"]).first_step_sigmoid_weight == 0.5
    for refused in (["--model", "ar"], ["--model", "br"], ["--scheme", "1-to-1"]):
        with pytest.raises(SystemExit):
            train.parse_args(refused + ["--first_tag_head"])
        assert "--first_tag_head learns the gold set from --model sog's first instance" in capsys.readouterr().err


def test_a_first_tag_head_trains_saves_and_loads_with_stock_transformers(tmp_path, tiny_encoder):
    """train.py --first_tag_head: the head's weights move from their start, are saved, and a fresh process loading
    the folder with AutoModel generates with them (the first tag's step probability is the head's sigmoid)."""
    out_dir = tmp_path / "model"
    train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--output_dir", str(out_dir), "--first_tag_head",
                        "--lexical_mode", "none"])   # no expert offsets: the first step reads the head alone
    saved = load_file(out_dir / "model.safetensors")
    assert json.loads((out_dir / "config.json").read_text())["first_tag_head"] is True
    assert saved["first_tag_head.weight"].abs().max() > 0 and saved["first_tag_head.bias"].std() > 0
    code = r"""
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
contexts = model.encode_contexts(["a python library"], tokenizer)
first = model(**model.build_inputs(contexts, [[]], tokenizer)).logits[0]
tags = model.generate_tags(["a python library"], tokenizer, num_tags=2)[0]
print(json.dumps({"top": model.config.tag_names[int(first.argmax())], "sigmoid": torch.sigmoid(first.max()).item(),
                  "tags": tags}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code, str(out_dir)], cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tags"][0]["label"] == result["top"]
    assert result["tags"][0]["step_probability"] == pytest.approx(result["sigmoid"], abs=1e-5)


def test_local_corpus_folders_are_read_afresh(tmp_path):
    """Two folders whose files have the same names must not share datasets' cache."""
    from data_builders.__main__ import write_folder
    import datasets

    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n" \
           "  - split: test\n    path: data/test-*\n---\n"
    sizes = {}
    for name, n in (("small", 6), ("large", 14)):
        rows = {"id": [str(i) for i in range(n)], "text": ["x"] * n, "tags": [["a"]] * n}
        corpus = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                                       "test": datasets.Dataset.from_dict(rows).select(range(2))})
        write_folder(corpus, str(tmp_path / name / "corpus"), card)
        sizes[name] = len(load_corpus(str(tmp_path / name / "corpus"))["train"])
    assert sizes == {"small": 6, "large": 14}
