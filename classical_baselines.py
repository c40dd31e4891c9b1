"""Non-neural baselines that tag models are compared with: frequency, TF-IDF + logistic regression, Omikuji.

The classical models see the same context fields as SOG, fused as extra tokens
(``loc_<word>``, ``img_<word>``, ``time_<word>``) appended to the text.
"""

import os
import re
import tempfile

from inputs_sog import post_fields
from corpora import tags_by_post_count


class FrequencyBaseline:
    """Recommends the K tags most posts of the training set carry, to every post (the paper's 'Frequency')."""

    def fit(self, train_tags):
        self.ranking = [tag for tag, _ in tags_by_post_count(train_tags)]
        if not self.ranking:
            raise ValueError("FrequencyBaseline.fit: the training posts carry no tags")
        return self

    def predict(self, num_posts: int, k: int) -> list[list[str]]:
        return [self.ranking[:k] for _ in range(num_posts)]


def fused_document(post) -> str:
    """The post's text followed by its other fields as prefixed tokens (early fusion for bag-of-words)."""
    image, location, time_words, text = post_fields(post)
    extra = [f"{prefix}_{word}" for prefix, value in (("img", image), ("loc", location), ("time", time_words))
             for word in re.findall(r"\w+", value.lower())]
    return " ".join([text] + extra)


def _vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)


class TfidfLogisticBaseline:
    """TF-IDF (word 1-2 grams) + one-vs-rest logistic regression; C chosen by P@1 on a validation split."""

    def __init__(self, c_grid=(1.0, 4.0, 16.0), n_jobs=2):
        self.c_grid, self.n_jobs = c_grid, n_jobs

    def _fit(self, documents, tags, c):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.preprocessing import MultiLabelBinarizer

        vectorizer, binarizer = _vectorizer(), MultiLabelBinarizer(sparse_output=True)
        features, targets = vectorizer.fit_transform(documents), binarizer.fit_transform(tags)
        # Canonical (sorted, deduplicated) indices: joblib hands large matrices to its workers read-only, and
        # scipy would otherwise try to sort them in place there ("WRITEBACKIFCOPY base is read-only").
        features.sum_duplicates()
        classifier = OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear"), n_jobs=self.n_jobs)
        classifier.fit(features, targets)
        return vectorizer, binarizer, classifier

    def fit(self, posts, tags, validation_posts, validation_tags, score_fn):
        """Fit one model per C on the train posts, keep the one whose ``score_fn(predictions, references)``
        gives the best ``precision@1`` on the validation posts."""
        documents, held = [fused_document(p) for p in posts], [fused_document(p) for p in validation_posts]
        self.validation, models = {}, {}
        for c in self.c_grid:
            models[c] = self._fit(documents, tags, c)
            self.validation[c] = score_fn(self._rank(models[c], held, 1), validation_tags)["precision@1"]
        self.c = max(self.c_grid, key=lambda c: self.validation[c])
        self.model = models[self.c]
        return self

    @staticmethod
    def _rank(model, documents, k):
        vectorizer, binarizer, classifier = model
        scores = classifier.predict_proba(vectorizer.transform(documents))
        scores = scores.toarray() if hasattr(scores, "toarray") else scores
        top = (-scores).argsort(axis=1)[:, :k]
        return [[binarizer.classes_[j] for j in row] for row in top]

    def predict(self, posts, k):
        return self._rank(self.model, [fused_document(p) for p in posts], k)


class OmikujiBaseline:
    """Omikuji (Parabel-style label trees; the backend of the Annif indexing tool) on the same TF-IDF."""

    def __init__(self, n_threads=2):
        self.n_threads = n_threads

    def fit(self, posts, tags):
        import omikuji

        self.vectorizer = _vectorizer()
        features = self.vectorizer.fit_transform([fused_document(p) for p in posts]).tocsr()
        self.labels = sorted({t for row in tags for t in row})
        label_ids = {t: i for i, t in enumerate(self.labels)}
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "train.txt")
            with open(path, "w", encoding="utf-8") as stream:  # the extreme-classification text format
                stream.write(f"{features.shape[0]} {features.shape[1]} {len(self.labels)}\n")
                for i, row_tags in enumerate(tags):
                    row = features.getrow(i)
                    pairs = " ".join(f"{j}:{v:.6f}" for j, v in zip(row.indices, row.data))
                    stream.write(",".join(str(label_ids[t]) for t in row_tags) + f" {pairs}\n")
            self.model = omikuji.Model.train_on_data(path, omikuji.Model.default_hyper_param(), self.n_threads)
        return self

    def predict(self, posts, k):
        features = self.vectorizer.transform([fused_document(p) for p in posts]).tocsr()
        ranked = []
        for i in range(features.shape[0]):
            row = features.getrow(i)
            predicted = self.model.predict(list(zip(row.indices.tolist(), row.data.tolist())), top_k=k)
            ranked.append([self.labels[label] for label, _ in predicted])
        return ranked
