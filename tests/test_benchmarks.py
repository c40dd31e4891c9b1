"""The helpers every published table goes through: mean and spread over seeds, the tie rule's standard errors
(the test size's, and the one counting a group's posts as one draw), the Markdown cells, and --update refusing to
merge rows made under other settings (rows keep their own seeds)."""

import json
import math

import datasets
import pytest

from benchmarks import common
from evaluation import clustered_standard_error

SCORES = {"P@1": 80.0, "P@3": 50.0, "P@5": 40.0, "R@1": 30.0, "R@3": 60.0, "R@5": 70.0}
SETTINGS = {"dataset": "debtags", "train_posts": 10, "validation_posts": 5, "test_posts": 400, "seeds": [1, 2]}


def run(seed, shift, **extra):
    return {"model": "SOG", "seed": seed, **{m: v + shift for m, v in SCORES.items()}, **extra}


def test_over_seeds_gives_mean_and_sample_standard_deviation():
    row = common.over_seeds([run(1, 0.0, train_seconds=10.0), run(2, 4.0, train_seconds=20.0)])
    assert row["seeds"] == [1, 2]
    assert row["P@1"] == 82.0 and row["P@1_std"] == pytest.approx(round(math.sqrt(8), 2))
    assert row["train_seconds"] == 15.0 and "train_seconds_std" not in row
    assert [r["seed"] for r in row["runs"]] == [1, 2]


def test_standard_error_of_p_at_1_by_hand():
    # sqrt(0.8 * 0.2 / 400) = 0.02, i.e. 2 points
    assert common.p_at_1_standard_error(80, 400) == pytest.approx(2.0)
    line = common.settings_line(SETTINGS, [{"P@1": 70.0}, {"P@1": 80.0}, {"P@1": 95.0}])
    assert "near 80 (the median row)" in line and "2.0 points" in line


def test_clustered_standard_error_by_hand_counts_a_group_as_one_draw():
    # one post per group: sqrt(4 / 3 * 4 * 0.25) / 4 = 0.2887, the usual standard error of a mean of four 0/1
    assert clustered_standard_error([1, 1, 0, 0], ["a", "b", "c", "d"]) == pytest.approx(28.87, abs=0.01)
    # two groups whose posts are right or wrong together: deviations +1 and -1, sqrt(2 / 1 * 2) / 4 = 0.5
    assert clustered_standard_error([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="one group per post"):
        clustered_standard_error([1, 0], ["a"])


def test_a_run_s_standard_errors_come_from_its_predictions_and_the_test_groups(tmp_path):
    test = datasets.Dataset.from_dict({"id": ["p1", "p2", "p3", "p4"], "group": ["mono", "mono", "", "x"],
                                       "tags": [["a"], ["a", "b"], ["c"], ["d"]]})
    predicted = {"p1": ["b", "a"], "p2": ["b", "c"], "p3": ["c"], "p4": ["d", "a"]}
    lines = [{"id": i, "gold": g, "predicted": [{"label": t} for t in predicted[i]]}
             for i, g in zip(test["id"], test["tags"])]
    file = tmp_path / "eval_predictions.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in reversed(lines)) + "\n")   # order must not matter
    errors = common.test_group_statistics_of_run(file, test)
    # P@1 per post 0, 1, 1, 1 in groups mono, mono, p3 (the empty group is the post's own), x
    assert errors["P@1_se"] == pytest.approx(round(clustered_standard_error(
        [0, 1, 1, 1], ["mono", "mono", "p3", "x"]), 2))
    # R@5 per post 1, 0.5, 1, 1
    assert errors["R@5_se"] == pytest.approx(round(clustered_standard_error(
        [1, 0.5, 1, 1], ["mono", "mono", "p3", "x"]), 2))
    # mono, the largest group, is left out: P@1 on p3 and p4 only
    assert errors["largest_test_group"] == "mono" and errors["largest_test_group_posts"] == 2
    assert errors["P@1_without_largest_group"] == 100.0 and errors["R@5_without_largest_group"] == 100.0
    file.write_text(json.dumps({**lines[0], "id": "elsewhere"}) + "\n")
    with pytest.raises(ValueError, match="eval_predictions.jsonl.*'elsewhere'.*another split"):
        common.test_group_statistics_of_run(file, test)


def test_scores_without_the_largest_group_only_where_a_group_holds_several_test_posts():
    metric = common.load_tag_metric()
    predicted, gold = [["a"], ["a"], ["b"], ["c"]], [["a"], ["x"], ["x"], ["c"]]
    grouped = common.test_group_statistics(metric, predicted, gold, ["big", "big", "big", "small"])
    assert grouped["largest_test_group"] == "big" and grouped["largest_test_group_posts"] == 3
    assert grouped["P@1_without_largest_group"] == 100.0   # the one post outside "big"
    one_each = common.test_group_statistics(metric, predicted, gold, ["p1", "p2", "p3", "p4"])
    assert set(one_each) == {"P@1_se", "R@5_se"}


def test_markdown_names_the_largest_group_and_leaves_out_columns_no_row_fills():
    columns = [("train s", "train_seconds", ".0f")]
    grouped = run(1, 0.0, **{"P@1_se": 2.8, "R@5_se": 1.3, "P@1_without_largest_group": 93.0,
                             "largest_test_group": "mono", "largest_test_group_posts": 147})
    table = common.markdown([common.over_seeds([grouped]), common.over_seeds([run(1, 1.0)])],
                            {**SETTINGS, "seeds": [1]}, columns)
    assert "The largest test group, `mono` (147 posts)" in table
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    # no row has R@5 without the group, nor the train seconds: those columns are left out
    assert header.endswith("| R@5 | P@1 w/o largest group |")
    assert table.rstrip().endswith("| 71.00 | - |")
    plain = common.markdown([common.over_seeds([run(1, 0.0, train_seconds=12.0)])], {**SETTINGS, "seeds": [1]},
                            columns)
    assert "w/o largest group" not in plain and plain.rstrip().endswith("| 12 |")


def test_settings_line_gives_the_grouped_errors_of_the_rows_that_have_them():
    rows = [{"P@1": 90.0, "P@1_se": 3.5, "R@5_se": 1.3}, {"P@1": 92.0, "P@1_se": 0.6, "R@5_se": 1.2},
            {"P@1": 91.0}]
    line = common.settings_line({**SETTINGS, "test_posts": 3000}, rows)
    assert "0.6 to 3.5 points of P@1 and 1.2 to 1.3 of R@5 over the 2 row(s)" in line
    assert "one draw" not in common.settings_line(SETTINGS, [{"P@1": 80.0}])


def test_markdown_shows_spread_only_when_there_is_one():
    columns = [("train s", "train_seconds", ".0f")]
    several = common.markdown([common.over_seeds([run(1, 0.0), run(2, 4.0)])], SETTINGS, columns)
    assert "| SOG | 82.00 ± 2.83 |" in several and "mean ± standard deviation" in several
    one = common.markdown([common.over_seeds([run(1, 0.0, train_seconds=12.0)])], {**SETTINGS, "seeds": [1]}, columns)
    assert "| SOG | 80.00 | 50.00 |" in one and "±" not in one.split("\n\n")[-1]
    assert "one seed" in one and one.rstrip().endswith("| 12 |")


def test_update_refuses_rows_made_under_other_settings(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"settings": SETTINGS, "rows": [common.over_seeds([run(1, 0.0)])]}))
    with pytest.raises(ValueError, match="train_posts"):
        common.merged_results(path, {**SETTINGS, "train_posts": 11}, [])
    settings, merged = common.merged_results(path, SETTINGS, [{**common.over_seeds([run(1, 1.0)]), "model": "BR"}])
    assert [row["model"] for row in merged] == ["SOG", "BR"] and settings["seeds"] == [1]


def test_update_over_sittings_lets_each_row_keep_its_own_seeds(tmp_path):
    # a long table measured in sittings: SOG with three seeds first, then BR with two (other seeds, not an error)
    stem, columns = tmp_path / "table", [("train s", "train_seconds", ".0f")]
    sog = common.over_seeds([run(seed, float(seed), train_seconds=1.0) for seed in (1, 2, 3)])
    common.write_results(stem, {**SETTINGS, "seeds": [1, 2, 3]}, [sog], columns, update=True)   # no file yet
    br = {**common.over_seeds([run(seed, 0.0, train_seconds=1.0) for seed in (1, 2)]), "model": "BR"}
    rows = common.write_results(stem, {**SETTINGS, "seeds": [1, 2]}, [br], columns, update=True)
    written = json.loads(stem.with_suffix(".json").read_text())
    assert [(row["model"], row["seeds"]) for row in rows] == [("SOG", [1, 2, 3]), ("BR", [1, 2])]
    assert written["rows"] == rows and written["settings"]["seeds"] == [1, 2, 3]
    table = stem.with_suffix(".md").read_text()
    assert "| SOG | 82.00 ± 1.00 |" in table and "| BR | 80.00 ± 0.00 |" in table
    # without --update the file holds this run's rows only
    assert [row["model"] for row in common.write_results(stem, SETTINGS, [br], columns)] == ["BR"]
    assert [row["model"] for row in json.loads(stem.with_suffix(".json").read_text())["rows"]] == ["BR"]


def test_scale_measures_start_up_memory_up_to_the_marker_and_leaves_out_mapped_files(tmp_path):
    # benchmarks.scale's start-up target is about anonymous memory: 400 MB allocated after the marker must not count
    # as start-up, and a 400 MB file mapped and read before it must not count at all
    from benchmarks.scale import measure
    mapped = tmp_path / "mapped.bin"
    mapped.write_bytes(b"\1" * (400 << 20))
    script = (f"import mmap, sys, time; f = open({str(mapped)!r}, 'rb'); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ); "
              "s = sum(m[i] for i in range(0, len(m), 4096)); time.sleep(1); print('start-up over', flush=True); "
              "x = bytearray(400 << 20); x[::4096] = b'\\1' * len(x[::4096]); time.sleep(1)")
    import sys
    measured = measure([sys.executable, "-c", script], tmp_path / "log.txt", startup_ends="start-up over")
    assert measured["peak_rss_mb"] > 750                     # both: the mapped file's pages and the heap
    assert 350 < measured["peak_anon_mb"] < 550                # the heap only
    assert measured["startup_peak_anon_mb"] < 150              # before the marker: neither


def test_scale_refuses_a_size_of_no_posts_and_names_the_option(capsys):
    from benchmarks.scale import parse_args
    with pytest.raises(SystemExit):
        parse_args(["--suggest_sizes", "0"])
    assert "--suggest_sizes must be numbers of posts above 0" in capsys.readouterr().err
    assert parse_args(["--suggest_sizes"]).suggest_sizes == []        # no size given: no suggest rows


def test_equal_cost_rows_are_distinct_train_py_runs_and_evaluations_reach_every_row_only_when_given():
    import train
    from benchmarks import equal_cost
    with_evaluations = equal_cost.train_budget(equal_cost.parse_args(["--evaluations", "10"]))
    runs = []
    for name, (arguments, _) in equal_cost.NEURAL.items():         # a misspelled row would fail here, not hours in
        parsed = vars(train.parse_args(with_evaluations + arguments))  # run_neural's order: a row's own come last
        pinned = "--evaluations" in arguments                          # the "as before" rows keep theirs
        assert (parsed["evaluations"] == 10) != pinned and parsed["max_train_minutes"] == 20.0, name
        assert parsed not in runs, f"{name} trains what another row trains"
        runs.append(parsed)
    assert "--evaluations" not in equal_cost.train_budget(equal_cost.parse_args([]))   # earlier runs stay reusable
    # every carved validation post is written, 500 of them read while training; 0 reads them all throughout
    args = equal_cost.parse_args([])
    assert args.max_validation_samples is None and vars(train.parse_args(equal_cost.train_budget(args)))[
        "validation_sample_while_training"] == 500
    before = equal_cost.train_budget(equal_cost.parse_args(["--max_validation_samples", "500",
                                                            "--validation_sample_while_training", "0"]))
    assert train.parse_args(before).validation_sample_while_training is None


def test_a_rows_validation_curve_lists_each_evaluation_of_the_run():
    from benchmarks.common import validation_curve
    summary = {"metric_for_best_model": "precision@1",
               "history": [{"epoch": 0.9, "validation_precision@1": 57.6, "validation_recall@5": 63.5},
                           {"epoch": 1.8, "validation_precision@1": 62.604, "validation_recall@5": 68.9}]}
    assert validation_curve(summary) == {"validation_epochs": [0.9, 1.8], "validation_by_epoch": [57.6, 62.6],
                                         "validation_R@5_by_epoch": [63.5, 68.9]}


def tiny_run(tmp_path, tiny_encoder, *extra, name="run"):
    """A train.py run of a tiny SOG with the expert mixed in (16 validation posts sampled from the carved ones):
    its folder and summary."""
    import train
    folder = tmp_path / name
    train.main(["--max_train_samples", "40", "--max_validation_samples", "16", "--max_eval_samples", "10",
                "--max_length", "32", "--per_device_train_batch_size", "8", "--report_to", "none",
                "--model_name_or_path", tiny_encoder, "--num_train_epochs", "1", "--lexical_c_grid", "4",
                "--output_dir", str(folder), *extra])
    return folder, json.loads((folder / "train_summary.json").read_text())


def test_expert_weights_refits_a_run_the_way_train_py_fitted_it(tmp_path, tiny_encoder):
    # the same rule on the same checkpoint and rebuilt splits: the same weights and, scored once more, the same test
    from benchmarks import expert_weights
    folder, summary = tiny_run(tmp_path, tiny_encoder)
    stem = tmp_path / "results" / "expert_weights"
    [row] = expert_weights.main([str(folder), "--results", str(stem)])
    assert row["weight"] == row["weight_before"] == summary["lexical_expert"]["weight"]
    assert row["later_weight"] == row["later_weight_before"] == summary["lexical_expert"]["later_weight"]
    assert row["validation_posts"] == 16 and row["test_posts"] == 10
    assert row["test_after"] == row["test_before"] and set(row["test_after_se"]) == {"P@1_se", "R@5_se"}
    assert row["test_gain"] == {"P@1": 0, "P@1_se": 0, "R@5": 0, "R@5_se": 0}   # the same tags, post by post
    assert json.loads(stem.with_suffix(".json").read_text())["rows"] == [json.loads(json.dumps(row))]
    assert f"| {row['weight_before']:g} → {row['weight']:g} |" in stem.with_suffix(".md").read_text()


def test_a_gain_over_a_run_s_own_test_predictions_is_read_post_by_post(tmp_path):
    from benchmarks.common import paired_gain, run_test_predictions
    from corpora import Split
    from evaluation import load_tag_metric, per_post_scores
    test = Split.of("test", datasets.Dataset.from_dict({
        "id": ["a", "b", "c", "d"], "text": ["", "", "", ""], "tags": [["x"], ["y"], ["x", "z"], ["y"]],
        "group": ["g1", "g1", "g2", "g3"]}))
    written = {"a": ["y", "x"], "b": ["y"], "c": ["z", "x"], "d": ["x"]}             # the run's tags, post by post
    file = tmp_path / "eval_predictions.jsonl"
    file.write_text("".join(json.dumps({"id": i, "gold": [], "predicted": [{"label": t} for t in written[i]]}) + "\n"
                            for i in ["d", "b", "c", "a"]) + "\n")                  # any order; blank lines skipped
    own = [[tag["label"] for tag in line["predicted"]] for line in run_test_predictions(file, test.data)]
    assert own == [written[i] for i in "abcd"]                                       # the test table's order
    after = [["x"], ["y"], ["z"], ["y"]]                                             # a and d gain at P@1
    gain = paired_gain(*(per_post_scores(load_tag_metric(), ranked, test.gold, 5) for ranked in (own, after)),
                       test.groups)
    assert gain["P@1"] == 50.0 and gain["R@5"] == pytest.approx(100 * (0 + 0 - 0.5 + 1) / 4, abs=0.01)
    # P@1 differences a +1, b 0, c 0, d +1 (mean 0.5); summed deviations by group: g1 (a, b) 0, g2 (c) -0.5,
    # g3 (d) +0.5, so the cluster-robust error is sqrt(3/2 * (0 + 0.25 + 0.25)) / 4
    assert gain["P@1_se"] == pytest.approx(100 * (1.5 * 0.5) ** 0.5 / 4, abs=0.01)
    file.write_text(json.dumps({"id": "e", "gold": [], "predicted": []}) + "\n")
    with pytest.raises(ValueError, match="1 predictions for a test split of 4 posts; ids not in it, first: 'e'"):
        run_test_predictions(file, test.data)


def test_expert_weights_fits_a_mix_run_s_expert_again_reading_words_as_train_py_fits_it(tmp_path, tiny_encoder):
    from benchmarks import expert_weights
    stem = tmp_path / "results" / "expert_weights"
    # a run whose expert read words already: fitted again the same way, the same expert, weights and test
    folder, summary = tiny_run(tmp_path, tiny_encoder, "--lexical_units", "words")
    [row] = expert_weights.main([str(folder), "--lexical_units", "words", "--results", str(stem)])
    own = summary["lexical_expert"]
    assert (row["expert"]["words"], row["expert"]["C"], row["expert"]["features"]) == \
        (own["words"], own["C"], own["features"])
    assert row["weight"] == own["weight"] and row["test_after"] == row["test_before"]
    # a run whose expert read word pieces: now a words expert stands in
    folder, summary = tiny_run(tmp_path, tiny_encoder, name="pieces")
    assert summary["lexical_expert"]["units"] == "pieces"                    # train.py's default
    [row] = expert_weights.main([str(folder), "--lexical_units", "words", "--results", str(stem)])
    assert row["expert"]["units"] == "words" and row["expert"]["words"] == own["words"]
    assert f"| words ({own['words']:,}; C=4) |" in stem.with_suffix(".md").read_text()
    # or one that reads both: the same words after the pieces, and more features than the words alone
    [row] = expert_weights.main([str(folder), "--lexical_units", "both", "--results", str(stem)])
    assert row["expert"]["units"] == "both" and row["expert"]["words"] == own["words"]
    assert row["expert"]["features"] > own["features"]
    for m in ("P@1", "R@5"):                  # the gain over the run's own predictions is the difference of scores
        assert row["test_gain"][m] == pytest.approx(row["test_after"][m] - row["test_before"][m], abs=0.011)
    assert f"| word pieces and words ({own['words']:,}; C=4) |" in stem.with_suffix(".md").read_text()


def test_expert_weights_fits_the_later_weight_on_every_carved_validation_post_when_told_the_corpus(tmp_path,
                                                                                                   tiny_encoder,
                                                                                                   monkeypatch):
    # as train.py --validation_sample_while_training would: the first weight on the run's own 16 posts, the later
    # weight (and its scores) on the whole carved validation
    import train
    from benchmarks import expert_weights, trained_runs
    from corpora import BUNDLED_CORPUS, DEFAULT_VALIDATION_PERCENTAGE, load_corpus, prepare_splits
    folder, summary = tiny_run(tmp_path, tiny_encoder)
    carved = prepare_splits(load_corpus(None), DEFAULT_VALIDATION_PERCENTAGE)[1]
    read = []
    for name in ("fit_lexical_weight", "fit_later_lexical_weight"):
        def recording(accelerator, model, tokenizer, split, *rest, real=getattr(train, name), name=name):
            read.append((name, sorted(map(str, split.data["id"]))))
            return real(accelerator, model, tokenizer, split, *rest)
        monkeypatch.setattr(train, name, recording)
    stem = tmp_path / "results" / "expert_weights"
    [row] = expert_weights.main([str(folder), "--dataset", str(BUNDLED_CORPUS), "--results", str(stem)])
    own = sorted(map(str, trained_runs.run_splits(summary).validation.data["id"]))
    assert read == [("fit_lexical_weight", own), ("fit_later_lexical_weight", sorted(map(str, carved["id"])))]
    assert (row["validation_posts"], row["validation_sample_posts"]) == (len(carved), 16) and len(carved) > 16
    assert row["weight"] == summary["lexical_expert"]["weight"]
    later = row["validation_R@5_by_later_weight"]
    assert row["later_weight"] == max(later, key=lambda w: (later[w], -abs(w - row["weight"])))
    assert f"| {len(carved)} (" in stem.with_suffix(".md").read_text()
    assert "; first weight: 16 |" in stem.with_suffix(".md").read_text()


def test_held_out_weights_scores_a_run_on_its_own_validation_and_on_the_carved_posts_it_never_saw(tmp_path,
                                                                                                  tiny_encoder):
    # on the run's own sample, the weights it chose score what train.py recorded; the held-out posts are the rest
    from benchmarks import held_out_weights
    from corpora import BUNDLED_CORPUS, DEFAULT_VALIDATION_PERCENTAGE, load_corpus, prepare_splits
    folder, summary = tiny_run(tmp_path, tiny_encoder)
    carved = prepare_splits(load_corpus(None), DEFAULT_VALIDATION_PERCENTAGE)[1]
    stem = tmp_path / "results" / "held_out_weights"
    [row] = held_out_weights.main([str(folder), "--dataset", str(BUNDLED_CORPUS), "--results", str(stem)])
    assert row["posts"] == {"used": 16, "held_out": len(carved) - 16}
    used_p1 = row["used_P@1_by_weight"]["mean"]
    used_r5 = row["used_R@5_by_later_weight"]["mean"]
    assert used_p1[row["weight"]] == round(summary["lexical_expert"]["validation_by_weight"][str(row["weight"])], 2)
    assert used_r5[row["later_weight"]] == round(summary["validation"]["recall@5"], 2)
    assert row["held_out_P@1_by_weight"]["gain_se"][1.0] == 0 and len(row["held_out_P@1_by_weight"]["mean"]) == 9
    table = stem.with_suffix(".md").read_text()
    assert f"| held-out R@5 by later weight | {len(carved) - 16} (" in table and table.count(" **") == 4


def test_held_out_weights_refuses_a_run_from_another_corpus_and_a_run_that_used_every_carved_post(tmp_path):
    from benchmarks.held_out_weights import held_out_posts
    from corpora import Split
    carved = Split.of("carved validation",
                      datasets.Dataset.from_dict({"id": ["a", "b", "c"], "tags": [["x"], ["y"], ["x"]]}))
    used = lambda ids: Split.of("validation", datasets.Dataset.from_dict({"id": ids, "tags": [["x"]] * len(ids)}))
    assert [str(i) for i in held_out_posts(carved, used(["a"]), tmp_path).data["id"]] == ["b", "c"]
    with pytest.raises(SystemExit, match=r"1 of its 2 validation posts \(first: 'z'\) are not in the carved"):
        held_out_posts(carved, used(["a", "z"]), tmp_path)
    with pytest.raises(SystemExit, match="no held-out posts"):
        held_out_posts(carved, used(["a", "b", "c"]), tmp_path)


def test_paired_runs_reads_two_runs_post_by_post_and_refuses_runs_scored_on_another_split(tmp_path, tiny_encoder):
    import shutil
    from benchmarks import paired_runs
    folder, summary = tiny_run(tmp_path, tiny_encoder)
    written = [json.loads(line) for line in (folder / "eval_predictions.jsonl").read_text().splitlines()]
    perfect = tmp_path / "perfect"                               # the same run, its test tags replaced by the gold ones
    shutil.copytree(folder, perfect)
    (perfect / "eval_predictions.jsonl").write_text("".join(
        json.dumps({**line, "predicted": [{"label": tag} for tag in line["gold"]]}) + "\n" for line in written))
    stem = tmp_path / "results" / "paired"
    same, better = paired_runs.main([str(folder), str(folder), str(folder), str(perfect), "--results", str(stem)])
    assert same["test_gain"] == {"P@1": 0.0, "P@1_se": 0.0, "R@5": 0.0, "R@5_se": 0.0}
    assert same["test_before"] == same["test_after"] == {
        "P@1": pytest.approx(common.percent_row(summary["test"])["P@1"], abs=0.01),
        "R@5": pytest.approx(common.percent_row(summary["test"])["R@5"], abs=0.01)}
    assert better["test_after"]["P@1"] == 100.0
    assert better["test_gain"]["P@1"] == pytest.approx(100.0 - same["test_before"]["P@1"], abs=0.01)
    assert better["test_gain"]["P@1_se"] > 0 and better["test_gain"]["R@5"] > 0
    assert "| mean of 2 pairs |" in stem.with_suffix(".md").read_text()
    (perfect / "eval_predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in written[1:]))
    with pytest.raises(ValueError, match="perfect/eval_predictions.jsonl: 9 predictions for a test split of 10"):
        paired_runs.main([str(folder), str(perfect), "--results", str(stem)])
    with pytest.raises(SystemExit):
        paired_runs.parse_args([str(folder)])
    (tmp_path / "unfinished").mkdir()                              # a folder a killed run left: no summary
    with pytest.raises(SystemExit, match="unfinished: no train_summary.json"):
        paired_runs.main([str(tmp_path / "unfinished"), str(folder), "--results", str(stem)])


def test_first_step_ranking_ranks_by_the_first_step_alone_and_reads_hits_by_position(tmp_path, tiny_encoder):
    from benchmarks import first_step_ranking
    from benchmarks.trained_runs import load_trained, run_splits
    folder, summary = tiny_run(tmp_path, tiny_encoder)
    stem = tmp_path / "results" / "first_step"
    greedy, first = first_step_ranking.main([str(folder), "--results", str(stem)])
    assert (greedy["decoding"], first["decoding"]) == ("greedy, step by step", "first step's ranking")
    # the run's own decoding scores what the run scored; position 1's hit rate is P@1
    assert greedy["test"]["P@1"] == pytest.approx(common.percent_row(summary["test"])["P@1"], abs=0.01)
    assert greedy["test"]["R@5"] == pytest.approx(common.percent_row(summary["test"])["R@5"], abs=0.01)
    for row in (greedy, first):
        assert row["test"]["hits_by_position"][0] == pytest.approx(row["test"]["P@1"], abs=0.01)
    for split in ("validation", "test"):               # greedy's gain, post by post, is the rows' difference
        gain = first[split]["greedy_gain"]
        assert gain["P@1"] == 0 and gain["R@5"] == pytest.approx(greedy[split]["R@5"] - first[split]["R@5"], abs=0.02)
        assert "greedy_gain" not in greedy[split]
    # both decodings share the first step, so the first tag; over every tag, the ranking's probabilities are one
    # softmax's (decreasing, summing to 1), where greedy's each come from a step of their own (its last one is 1)
    _, model, tokenizer = load_trained(folder)
    posts, every = run_splits(summary).test.posts, model.config.num_tags
    stepwise = model.generate_tags(posts, tokenizer, num_tags=every)
    model.tag_set_decoder = first_step_ranking.FirstStepRanking
    ranked = model.generate_tags(posts, tokenizer, num_tags=every)
    assert [p[0]["label"] for p in ranked] == [p[0]["label"] for p in stepwise]
    assert [p[0]["step_probability"] for p in ranked] == pytest.approx([p[0]["step_probability"] for p in stepwise])
    for tags in ranked:
        probabilities = [tag["step_probability"] for tag in tags]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-4)
    assert all(tags[-1]["step_probability"] == pytest.approx(1) for tags in stepwise)
    assert [[t["label"] for t in tags[:5]] for tags in ranked] == [
        [t["label"] for t in tags] for tags in model.generate_tags(posts, tokenizer, num_tags=5)]
    assert "| first step's ranking |" in stem.with_suffix(".md").read_text()


def test_expert_features_fits_each_kind_the_same_way_on_the_same_validation_posts(tmp_path, tiny_encoder):
    from benchmarks import expert_features
    from corpora import BUNDLED_CORPUS
    stem = tmp_path / "results" / "expert_features"
    rows = expert_features.main(["--dataset", str(BUNDLED_CORPUS), "--model_name_or_path", tiny_encoder, "--max_train_samples", "300",
                                 "--c_grid", "4", "16", "--results", str(stem)])
    pieces, words, both, ngrams, omikuji = rows
    settings = json.loads(stem.with_suffix(".json").read_text())["settings"]
    assert words["expert"].startswith("words") and omikuji["expert"].startswith("Omikuji")
    assert settings["train_posts"] <= 300 and settings["validation_posts"] >= 300          # every carved post
    assert 0 < words["features"] <= settings["words"] and words["features"] != pieces["features"]
    assert both["features"] == pieces["features"] + words["features"]     # the same features, side by side
    for row in (pieces, words, both, ngrams):
        # the expert's own P@1 when C was chosen is what the table reports for it, read the metric's way
        assert row["P@1"] == row["validation_P@1_by_C"][row["C"]] and set(row["validation_P@1_by_C"]) == {4.0, 16.0}
    assert pieces["P@1_gain_over_pieces"] == pieces["R@5_gain_over_pieces"] == pieces["P@1_gain_se"] == 0
    assert words["R@5_gain_over_pieces"] == pytest.approx(words["R@5"] - pieces["R@5"], abs=0.011)
    assert "| Omikuji (reference) | - | - |" in stem.with_suffix(".md").read_text()


def test_a_run_states_the_precision_it_trained_under_whenever_it_was_made():
    # what equal_cost's rows record per run, and what reuse compares: "auto" never stands for a precision
    assert common.trained_precision({"args": {"mixed_precision": "auto"}, "mixed_precision": "bf16"}) == "bf16"
    assert common.trained_precision({"args": {"mixed_precision": "bf16"}}) == "bf16"   # before train.py recorded it
    assert common.trained_precision({"args": {"mixed_precision": None}}) == "no"       # before: nothing given, float32


def test_a_run_is_reused_only_if_made_with_the_same_arguments(tmp_path):
    import train
    from benchmarks.common import reusable_summary
    argv = ["--model", "sog", "--max_train_minutes", "20", "--output_dir", "x"]
    saved = tmp_path / "train_summary.json"
    args = json.loads(json.dumps(vars(train.parse_args(argv))))
    here = train.mixed_precision_of("auto")                        # what --mixed_precision auto is on this machine
    saved.write_text(json.dumps({"args": args, "mixed_precision": here}))
    assert reusable_summary(saved, argv) is not None
    assert reusable_summary(saved, argv + ["--lexical_units", "words"]) is None
    # an option added after the run was made: reused while it is at its default (the behaviour the run had)
    saved.write_text(json.dumps({"args": {k: v for k, v in args.items() if k != "lexical_units"},
                                 "mixed_precision": here}))
    assert reusable_summary(saved, argv) is not None
    assert reusable_summary(saved, argv + ["--lexical_units", "words"]) is None
    # the same arguments, but auto resolved otherwise where the run was made: not the run these arguments make here
    saved.write_text(json.dumps({"args": args, "mixed_precision": "bf16" if here == "no" else "no"}))
    assert reusable_summary(saved, argv) is None
    # a run from before the resolution was recorded, with bf16 asked for by name: it trained under bf16
    saved.write_text(json.dumps({"args": {**args, "mixed_precision": "bf16"}}))
    assert reusable_summary(saved, argv + ["--mixed_precision", "bf16"]) is not None
