"""The lexical expert: the same TF-IDF in fitting and in the model, a product of experts at decoding (cached or
not), cross-fitted priors and joint training through the collator, explanations, train.py's fitting of C and of
the weight on validation, and a saved expert that reloads in a fresh process."""

import json
import os
import subprocess
import sys

import accelerate
import datasets
import pytest
import torch

import train
from lexical import fit_expert, fit_idf, fit_word_vocabulary, install, logistic_gradients, rows_of, tfidf_rows
from configuration_sog import SOGConfig
from modeling_sog import ExpertOffsets, PiecesAndWords, SetDecoder, SOGForTagGeneration, post_words, WordBags
from inputs_sog import post_fields
from tests.helpers import labels_of, tiny_config, tiny_sog
from training_instances import InstanceCollator, epoch_instances

TAGS = ["fruit", "food", "vehicle", "road"]
FRUIT = ["apple banana cherry salad", "a ripe mango and a pear", "banana bread with apple", "cherry and pear jam"]
ROADS = ["car truck engine", "the bus and the tram on the road", "a truck on the motorway", "engine oil for the car"]
GOLD = [[0, 1]] * 4 + [[2, 3]] * 4
KINDS = ["words", "pieces", "both"]


def expert_model(kind="words", **overrides):
    """A tiny SOG with an expert that reads words (a vocabulary of every word of the toy posts), word pieces, or
    both."""
    words = fit_word_vocabulary([post_fields(p) for p in FRUIT + ROADS], min_df=1)[0] if kind != "pieces" else None
    return tiny_sog(tags=TAGS, lexical_mode=overrides.pop("lexical_mode", "mix"), lexical_units=kind,
                    lexical_words=words, **overrides)


def fitted_toy_expert(model, tokenizer, folds=0):
    bags = model.lexical_input.bags(FRUIT + ROADS, tokenizer)
    return fit_expert(bags, GOLD, bags, GOLD, len(TAGS), model.lexical_input.rows, c_grid=(16.0,), folds=folds,
                      log=lambda *_: None), bags


def test_words_are_those_of_two_characters_or_more_lower_cased_and_prefixed_by_field():
    post = {"text": "Apple pie, a PIE-crust!", "location": "New York", "image": "A pie", "time": None}
    assert post_words(post_fields(post)) == [
        ("img_pie", "pie"), ("loc_new", "New"), ("loc_york", "York"),
        ("apple", "Apple"), ("pie", "pie"), ("pie", "PIE"), ("crust", "crust")]
    # the vocabulary: words of min_df posts or more, the most used first (ties alphabetical), at most max_words
    fields = [post_fields(p) for p in ["pie crust", "apple pie", "apple pie tart", "x"]]
    assert fit_word_vocabulary(fields) == (["pie", "apple"], 4)
    assert fit_word_vocabulary(fields, min_df=1, max_words=3) == (["pie", "apple", "crust"], 4)
    model = tiny_sog(tags=TAGS, lexical_mode="mix", lexical_words=["pie", "apple"])
    assert isinstance(model.lexical_input, WordBags) and model.lexical.weight.shape == (2, len(TAGS))
    # words out of the vocabulary are not read; a word's count is its occurrences
    assert model.lexical_input.bags(["Pie, pie and an APPLE tart", "tart"], None) == [([0, 1], [2, 1]), ([], [])]
    with pytest.raises(ValueError, match="lexical_words must be distinct"):
        tiny_sog(tags=TAGS, lexical_mode="mix", lexical_words=["pie", "pie"])


def test_an_expert_reading_both_has_the_piece_rows_then_the_word_rows(tokenizer):
    pieces, words, both = (expert_model(kind) for kind in ("pieces", "words", "both"))
    assert isinstance(both.lexical_input, PiecesAndWords)
    rows = pieces.lexical_input.rows + words.lexical_input.rows
    assert both.lexical.weight.size(0) == both.lexical_input.rows == rows
    posts = ["Banana bread, banana JAM", "", "the tram"]
    offset = both.config.vocab_size
    assert both.lexical_input.bags(posts, tokenizer) == [
        (piece_ids + [offset + i for i in word_ids], piece_counts + word_counts)
        for (piece_ids, piece_counts), (word_ids, word_counts)
        in zip(pieces.lexical_input.bags(posts, tokenizer), words.lexical_input.bags(posts, tokenizer))]
    assert both.lexical_input.description == f"word pieces and {len(both.config.lexical_words):,} words"
    # a word's share in an explanation is that of its pieces and of itself: here only the word row says anything
    with torch.no_grad():
        both.lexical.idf.fill_(1.0)
        both.lexical.weight[offset + both.config.lexical_words.index("tram"), TAGS.index("road")] = 5.0
    assert both.explaining_words(post_fields("the tram"), both.lexical_input.bags(["the tram"], tokenizer)[0],
                                 [TAGS.index("road"), TAGS.index("fruit")], tokenizer) == [["tram"], []]
    # what the config says the expert reads, and what it refuses
    assert SOGConfig(lexical_words=["pie"]).lexical_units == "words" and SOGConfig().lexical_units == "pieces"
    with pytest.raises(ValueError, match="lexical_units='both' needs lexical_words"):
        SOGConfig(lexical_units="both")
    with pytest.raises(ValueError, match="lexical_units='pieces' reads no words"):
        SOGConfig(lexical_units="pieces", lexical_words=["pie"])
    with pytest.raises(ValueError, match="lexical_units must be one of"):
        SOGConfig(lexical_units="letters", lexical_words=["pie"])
    # train.py refuses a words vocabulary that would be empty, naming the option that asked for it
    args = train.parse_args(["--output_dir", "x", "--lexical_units", "both"])
    lonely = datasets.Dataset.from_dict({"text": ["apple pie", "road bus"]})           # no word in 2 posts
    with pytest.raises(ValueError, match="--lexical_units both: no word occurs in 2 or more of the 2 train posts"):
        train.word_vocabulary(args, lonely, accelerate.Accelerator(cpu=True))


def test_the_written_out_gradients_are_the_objectives_and_batches_are_the_selected_rows():
    # fit_logistic skips autograd: its gradients must be those of the objective it documents, on the rows it picked
    generator = torch.Generator().manual_seed(0)
    dense = torch.rand(12, 9, generator=generator) * (torch.rand(12, 9, generator=generator) < 0.3)
    features = dense.to_sparse_csr()
    batch = [7, 2, 11, 2, 0]                                                     # any order, repeats allowed
    rows = rows_of(features, batch)
    assert torch.equal(rows.to_dense(), dense[batch])
    targets = (torch.rand(5, 4, generator=generator) < 0.4).float()
    weight = torch.randn(9, 4, generator=generator, requires_grad=True)
    bias = torch.randn(4, generator=generator, requires_grad=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(dense[batch] @ weight + bias, targets,
                                                                reduction="sum") / 5 + 0.3 * weight.pow(2).sum()
    loss.backward()
    grad_weight, grad_bias = logistic_gradients(rows, targets, weight.detach(), bias.detach(), penalty=0.3)
    torch.testing.assert_close(grad_weight, weight.grad)
    torch.testing.assert_close(grad_bias, bias.grad)


@pytest.mark.parametrize("kind", KINDS)
def test_the_models_tfidf_is_the_one_the_expert_was_fitted_on(tokenizer, kind):
    model = expert_model(kind)
    reads = model.lexical_input
    bags = reads.bags(FRUIT + ROADS + ["apple apple apple pear"], tokenizer)
    idf = fit_idf(bags, reads.rows, min_df=1)
    columns = torch.arange(reads.rows)
    expected = tfidf_rows(bags, idf, columns).to_dense()                        # [posts, features]
    with torch.no_grad():
        model.lexical.idf.copy_(idf)
        inputs = reads.tensors(bags)
        weights = model.lexical.features(**inputs)                              # [posts, bag]
    got = torch.zeros_like(expected).scatter_add_(1, inputs["lexical_ids"], weights)
    assert torch.allclose(got, expected, atol=1e-6)
    [(ids, counts)] = reads.bags(["pear " * 3000], tokenizer)                   # the whole post, never truncated
    piece = [tokenizer.convert_tokens_to_ids("pear")]
    word = [] if kind == "pieces" else [model.config.lexical_words.index("pear")]
    expected = {"pieces": piece, "words": word, "both": piece + [model.config.vocab_size + i for i in word]}[kind]
    assert ids == expected and counts == [3000] * len(ids)                    # both: the word's row after the pieces'


@pytest.mark.parametrize("kind", KINDS)
def test_a_fitted_expert_mixes_into_every_step_of_generation(tokenizer, kind):
    model = expert_model(kind, attention_layout="one-pass")
    expert, _ = fitted_toy_expert(model, tokenizer)
    assert expert.validation_precision_at_1[16.0] == 100.0
    install(model, expert, trainable=False)
    posts = ["banana cherry", "truck engine", ""]
    model.config.lexical_weight = 4.0
    mixed = model.generate_tags(posts, tokenizer, num_tags=2)
    assert [sorted(labels_of(row)) for row in mixed[:2]] == [["food", "fruit"], ["road", "vehicle"]]
    uncached = model.generate_tags(posts, tokenizer, num_tags=2, use_cache=False)
    assert [labels_of(r) for r in mixed] == [labels_of(r) for r in uncached]
    for a, b in zip(mixed, uncached):
        assert [t["step_probability"] for t in a] == pytest.approx([t["step_probability"] for t in b], abs=1e-5)
    model.config.lexical_weight = 0.0                                        # weight 0: the encoder alone
    plain = tiny_sog(tags=TAGS, attention_layout="one-pass", lexical_units=model.config.lexical_units,
                     lexical_words=model.config.lexical_words)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("lexical.")})
    alone, reference = model.generate_tags(posts, tokenizer, num_tags=3), plain.generate_tags(posts, tokenizer, num_tags=3)
    assert [labels_of(r) for r in alone] == [labels_of(r) for r in reference]


def test_the_decoder_adds_each_steps_own_offsets():
    # a flat encoder: the offsets alone decide. The first step's favour tag 0; the later steps' favour 2 over 1.
    step_logits = lambda active, chosen: torch.zeros(len(active), 3)
    first, later = torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[0.0, 1.0, 2.0]])
    [tags] = SetDecoder(2).greedy(step_logits, 1, ExpertOffsets(first, later))
    assert [tag for tag, _, _ in tags] == [0, 2]
    [same] = SetDecoder(2).greedy(step_logits, 1, ExpertOffsets(first, first))
    assert [tag for tag, _, _ in same] == [0, 1]


def test_the_later_weight_moves_every_step_but_the_first(tokenizer):
    model = tiny_sog(tags=TAGS, lexical_mode="mix", attention_layout="one-pass")
    install(model, fitted_toy_expert(model, tokenizer)[0], trainable=False)
    posts = ["banana cherry", "truck engine"]
    model.config.lexical_weight = 4.0
    mixed = model.generate_tags(posts, tokenizer, num_tags=3)
    model.config.lexical_later_weight = 0.0                                  # from step 2: the encoder alone
    later_alone = model.generate_tags(posts, tokenizer, num_tags=3)
    model.config.lexical_later_weight = 4.0                                  # the same as the first: no change
    assert [labels_of(r) for r in model.generate_tags(posts, tokenizer, num_tags=3)] == [labels_of(r) for r in mixed]
    for a, b in zip(mixed, later_alone):
        assert a[0]["label"] == b[0]["label"] and a[0]["step_probability"] == pytest.approx(b[0]["step_probability"])
        assert [t["step_probability"] for t in a[1:]] != pytest.approx([t["step_probability"] for t in b[1:]])


@pytest.mark.parametrize("kind", KINDS)
def test_the_expert_explains_each_tag_with_words_of_the_post(tokenizer, kind):
    model = expert_model(kind)
    install(model, fitted_toy_expert(model, tokenizer)[0], trainable=False)
    model.config.lexical_weight = 4.0
    [tags] = model.generate_tags(["Banana and cherry on my desk"], tokenizer, num_tags=2, explain=True)
    for tag in tags:
        assert tag["words"] and set(tag["words"]) <= {"Banana", "and", "cherry", "on", "my", "desk"}
        assert tag["words"][0] in ("Banana", "cherry")
    with pytest.raises(ValueError, match="lexical expert"):
        tiny_sog(tags=TAGS).generate_tags(["x"], tokenizer, explain=True)


@pytest.mark.parametrize("layout", ["paper", "one-pass"])
def test_cross_fitted_priors_reach_every_instance_packed_or_not(tokenizer, layout):
    model = tiny_sog(tags=TAGS, lexical_mode="prior", attention_layout=layout)
    expert, _ = fitted_toy_expert(model, tokenizer, folds=2)
    assert expert.cross_fitted.shape == (8, len(TAGS))
    offsets = torch.nn.functional.logsigmoid(expert.cross_fitted)
    contexts = model.encode_contexts(FRUIT + ROADS, tokenizer)
    groups = epoch_instances(GOLD, "1-to-M", "all", seed=0)
    collate = InstanceCollator(model, tokenizer, contexts, offsets=offsets)
    unpacked = collate([inst for group in groups for inst in group])
    instances = [inst for group in groups for inst in group]
    assert torch.equal(unpacked["lexical_offsets"], offsets[[inst.post for inst in instances]])
    with torch.no_grad():
        without = model(**{k: v for k, v in unpacked.items() if k != "lexical_offsets"}).logits
        with_prior = model(**unpacked).logits
    assert torch.allclose(with_prior - without, unpacked["lexical_offsets"], atol=1e-5)
    if model.packs_instances:
        packed = collate(groups)
        with torch.no_grad():
            assert model(**packed).loss.item() == pytest.approx(model(**unpacked).loss.item(), abs=1e-5)


def test_a_joint_expert_learns_through_the_encoders_loss(tokenizer):
    model = expert_model("words", lexical_mode="joint")
    bags = model.lexical_input.bags(FRUIT + ROADS, tokenizer)
    with torch.no_grad():
        model.lexical.idf.copy_(fit_idf(bags, model.lexical_input.rows, min_df=1))
    contexts = model.encode_contexts(FRUIT + ROADS, tokenizer)
    batch = InstanceCollator(model, tokenizer, contexts, bags=bags)(
        [inst for group in epoch_instances(GOLD, "1-to-M", "all", seed=0) for inst in group])
    assert batch["lexical_ids"].size(0) == batch["labels"].size(0)
    model.train()
    model(**batch).loss.backward()
    touched = model.lexical.weight.grad.abs().sum(-1).nonzero().squeeze(-1)
    seen = {word for ids, _ in bags for word in ids}
    assert len(touched) > 0 and set(touched.tolist()) <= seen                # only the words of the posts
    assert model.lexical.bias.grad.abs().sum() > 0


def rule(score, gain_se, anchor):
    """best_lexical_weight's rule, read back from what a run records: the anchor unless a weight beats it by more
    than two standard errors of the gain; then the best of those, ties nearest the anchor."""
    clear = [w for w in score if score[w] - score[anchor] > 2 * gain_se[w]]
    return max(clear, key=lambda w: (score[w], -abs(w - anchor))) if clear else anchor


def test_the_expert_s_weight_leaves_the_anchor_only_for_a_gain_beyond_two_standard_errors():
    anchor = [1.0] * 50 + [0.0] * 50                                      # 100 validation posts, P@1 50
    clear_gain = [1.0] * 70 + [0.0] * 30                                  # +20 points on 20 posts
    small_gain = [1.0] * 51 + [0.0] * 49                                  # +1 point: one post
    singletons = [str(i) for i in range(100)]
    scores = {1.0: anchor, 2.0: clear_gain, 4.0: small_gain}
    chosen, tried, gain_se = train.best_lexical_weight([0.0, 1.0, 2.0, 4.0], lambda w: scores.get(w, anchor[::-1]),
                                                       1.0, singletons)
    assert chosen == 2.0 and tried == {0.0: 50.0, 1.0: 50.0, 2.0: 70.0, 4.0: 51.0}
    assert gain_se[1.0] == 0 and gain_se[2.0] == pytest.approx(100 * (0.2 * 0.8 * 100 / 99) ** 0.5 / 10, abs=1e-3)
    assert train.best_lexical_weight([1.0, 4.0], scores.get, 1.0, singletons)[0] == 1.0     # one post: a tie
    # the same 20 posts gained, but all of one group (one source package): one draw, no longer clear
    clustered = ["mono" if 50 <= i < 70 else str(i) for i in range(100)]
    assert train.best_lexical_weight([1.0, 2.0], scores.get, 1.0, clustered)[0] == 1.0
    # equal clear gains: the weight nearest the anchor
    assert train.best_lexical_weight([0.25, 1.0, 4.0], lambda w: anchor if w == 1.0 else clear_gain, 1.0,
                                     singletons)[0] == 0.25
    # fewer than two groups: no spread to read, the anchor stays
    assert train.best_lexical_weight([1.0, 2.0], scores.get, 1.0, ["one"] * 100)[0] == 1.0


@pytest.mark.parametrize("mode,units", [("mix", "words"), ("prior", "pieces"), ("mix", "both")])
def test_train_py_fits_c_and_the_weight_on_validation(tmp_path, tiny_encoder, mode, units):
    summary = train.main(["--max_train_samples", "60", "--max_validation_samples", "20", "--max_eval_samples", "12",
                          "--max_length", "32", "--per_device_train_batch_size", "8", "--report_to", "none",
                          "--model_name_or_path", tiny_encoder, "--num_train_epochs", "1", "--lexical_mode", mode,
                          "--lexical_c_grid", "4", "16", "--lexical_folds", "2", "--eval_steps", "4",
                          "--output_dir", str(tmp_path)] + (["--lexical_units", units] if units != "pieces" else []))
    expert = summary["lexical_expert"]
    assert expert["units"] == units                                          # pieces: the default
    assert expert["mode"] == mode and expert["C"] in (4.0, 16.0) and set(expert["validation_P@1_by_C"]) == {4.0, 16.0}
    assert expert["cross_fitted"] == (mode == "prior")
    assert expert["weight"] in train.LEXICAL_WEIGHTS and len(expert["validation_by_weight"]) == len(train.LEXICAL_WEIGHTS)
    assert expert["weight"] == rule(expert["validation_by_weight"], expert["validation_gain_se_by_weight"], 1.0)
    # Every evaluation chooses its own weight and is scored (so compared) at it: greedy decoding's first tag is the
    # first step's, so the full decoding's P@1 is the chosen weight's one-step P@1.
    history = summary["history"]
    assert len(history) > 1
    for row in history:
        tried = row["P@1_by_lexical_weight"]
        assert row["lexical_weight"] == rule(tried, row["P@1_gain_se_by_lexical_weight"], 1.0)
        assert round(row["validation_precision@1"], 2) == tried[row["lexical_weight"]]
    best = max(history, key=lambda row: row["validation_precision@1"])
    assert expert["weight"] == best["lexical_weight"] and summary["validation"]["precision@1"] == \
        best["validation_precision@1"]
    # SOG decodes in steps: the weight after the first tag is fitted on validation R@5 (P@1 cannot move)
    later = expert["validation_R@5_by_later_weight"]
    assert expert["later_weight"] == max(later, key=lambda w: (later[w], -abs(w - expert["weight"])))
    assert round(summary["validation"]["recall@5"], 2) == later[expert["later_weight"]]
    assert summary["train_seconds"] >= expert["seconds"]                     # the fit is training time
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lexical_mode"] == mode and config["lexical_weight"] == expert["weight"]
    # an expert reading words keeps its vocabulary (fitted on the train split) in the config, one weight row per
    # word (after the piece rows when it reads both)
    words = config.get("lexical_words")
    assert config["lexical_units"] == units and (words is not None) == (units != "pieces")
    if words:
        pieces = config["vocab_size"] if units == "both" else 0
        assert len(words) == expert["words"] <= expert["words_in_train"] and expert["features"] <= pieces + len(words)
        assert SOGForTagGeneration.from_pretrained(tmp_path).lexical.weight.size(0) == pieces + len(words)
        reads = ("word pieces and " if units == "both" else "") + f"{len(words):,} words"
        assert f"the whole post's {reads} to the tags" in (tmp_path / "README.md").read_text()
    assert config["lexical_later_weight"] == expert["later_weight"]


def test_with_a_validation_sample_the_first_weight_reads_the_sample_and_the_later_weight_every_post(tmp_path,
                                                                                                    tiny_encoder):
    summary = train.main(["--max_train_samples", "60", "--max_validation_samples", "20", "--max_eval_samples", "12",
                          "--max_length", "32", "--per_device_train_batch_size", "8", "--report_to", "none",
                          "--model_name_or_path", tiny_encoder, "--num_train_epochs", "1", "--lexical_c_grid", "4",
                          "--validation_sample_while_training", "8", "--output_dir", str(tmp_path)])
    expert = summary["lexical_expert"]
    # P@1 on 8 posts moves in steps of 12.5 points; every weight of every evaluation was scored on them
    for row in summary["history"]:
        assert all(v / 12.5 == round(v / 12.5) for v in row["P@1_by_lexical_weight"].values())
        assert row["validation_n"] == 8
    # the later weight was fitted on all 20, and the model is reported there
    assert summary["validation"]["n"] == 20 and summary["validation_sample_posts"] == 8
    later = expert["validation_R@5_by_later_weight"]
    assert round(summary["validation"]["recall@5"], 2) == later[expert["later_weight"]]
    assert summary["score_calibration"]["posts"] == 20


RELOAD = r"""
import json, sys
for name in ("configuration_sog", "modeling_sog", "modeling_br", "modeling_ar", "inputs_sog", "pipeline_sog"):
    sys.modules[name] = None
from transformers import AutoModel, AutoTokenizer
folder, posts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
print(json.dumps(model.generate_tags(posts, tokenizer, num_tags=2, explain=True)))
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_expert_reloads_in_a_fresh_process_with_the_same_tags_and_words(tmp_path, tokenizer, kind):
    model = expert_model(kind)
    install(model, fitted_toy_expert(model, tokenizer)[0], trainable=False)
    model.config.lexical_weight = 2.0
    posts = ["banana and cherry", "a truck on the road"]
    expected = model.generate_tags(posts, tokenizer, num_tags=2, explain=True)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path / "model"), json.dumps(posts)], cwd=tmp_path,
                          env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert [[(t["label"], t["words"]) for t in row] for row in got] == \
        [[(t["label"], t["words"]) for t in row] for row in expected]
    reloaded = SOGForTagGeneration.from_pretrained(tmp_path / "model")
    assert torch.equal(reloaded.lexical.weight, model.lexical.weight) and torch.equal(reloaded.lexical.idf, model.lexical.idf)


def test_the_pipeline_and_the_handler_pass_explain_through(tmp_path, tokenizer):
    from transformers import pipeline

    model = expert_model()
    install(model, fitted_toy_expert(model, tokenizer)[0], trainable=False)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    tagger = pipeline("tag-generation", model=str(tmp_path / "model"), trust_remote_code=True)
    tags = tagger("banana cherry", num_tags=2, explain=True)
    assert all(tag["words"] for tag in tags) and "words" not in tagger("banana cherry", num_tags=1)[0]
    with pytest.raises(ValueError, match="explain must be true or false"):
        tagger("banana", explain="yes")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path / "model"))
        from handler import EndpointHandler

        answer = EndpointHandler(str(tmp_path / "model"))({"inputs": ["banana cherry"],
                                                          "parameters": {"num_tags": 1, "explain": True}})
    assert answer[0][0]["words"]
