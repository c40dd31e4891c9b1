import pytest

from classical_baselines import FrequencyBaseline, OmikujiBaseline, TfidfLogisticBaseline, fused_document
from corpora import tags_by_post_count


def test_tags_by_post_count_counts_posts_not_occurrences():
    assert tags_by_post_count([["a", "a", "b"], ["b"], ["c", "b"]]) == [("b", 3), ("a", 1), ("c", 1)]


def test_frequency_baseline_recommends_the_most_common_tags():
    model = FrequencyBaseline().fit([["a", "b"], ["b"], ["c", "b", "a"]])
    assert model.predict(2, 2) == [["b", "a"], ["b", "a"]]
    with pytest.raises(ValueError, match="no tags"):
        FrequencyBaseline().fit([[], []])


def test_fused_document_appends_the_other_fields_as_prefixed_tokens():
    post = {"text": "A game", "location": "Games/Strategy", "time": "2020-07-01T14:52:00"}
    assert fused_document(post) == "A game loc_games loc_strategy time_summer time_weekday time_afternoon"


@pytest.mark.parametrize("model_class", [TfidfLogisticBaseline, OmikujiBaseline])
def test_classical_baselines_learn_a_separable_toy_task(model_class):
    posts = [f"apple banana fruit salad {i}" for i in range(20)] + [f"car truck road trip {i}" for i in range(20)]
    tags = [["fruit", "food"]] * 20 + [["vehicle"]] * 20
    if model_class is TfidfLogisticBaseline:
        model = model_class(c_grid=(1.0, 10.0), n_jobs=1).fit(posts, tags, posts[:4], tags[:4],
                                                              lambda p, r: {"precision@1": 0.0})
    else:
        model = model_class(n_threads=1).fit(posts, tags)
    predictions = model.predict(["a banana and an apple", "a truck on the road"], 1)
    assert predictions == [["food"], ["vehicle"]] or predictions == [["fruit"], ["vehicle"]]


def test_tfidf_logistic_regression_fits_a_matrix_large_enough_for_joblib_to_share_read_only():
    """joblib hands arrays over 1 MB to its workers as read-only memory maps; the fit must not write to them."""
    import random

    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    posts = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(12000)]
    tags = [[f"t{rng.randrange(5)}"] for _ in posts]
    model = TfidfLogisticBaseline(c_grid=(1.0,), n_jobs=2).fit(posts, tags, posts[:50], tags[:50],
                                                               lambda p, r: {"precision@1": 0.0})
    assert len(model.predict(posts[:3], 2)[0]) == 2
