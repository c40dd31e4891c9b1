"""The ``"tag-generation"`` pipeline (ships to the Hub; imports only transformers).

>>> pipe = pipeline(model=folder, trust_remote_code=True)        # doctest: +SKIP
>>> pipe("How do I merge two dataframes?", num_tags=3)           # doctest: +SKIP
[{'label': 'pandas', 'score': 0.61}, {'label': 'python', 'score': 0.52}, ...]

A post is a string or a dict with any of ``text``, ``image``, ``location``, ``time``. A list of posts
returns one list per post and is generated in batches (``batch_size``, default 32) by the model's own
``generate_tags``, which the pipeline, ``handler.py`` and evaluation all share.
"""

from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

DEFAULT_BATCH_SIZE = 32


class TagGenerationPipeline(Pipeline):
    _load_tokenizer = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_processor = False

    def _sanitize_parameters(self, num_tags=None, threshold=None, **unused):
        if unused:
            raise TypeError(f"tag-generation got unexpected parameter(s) {sorted(unused)}; "
                            "it takes num_tags, threshold and batch_size")
        forward = {}
        if num_tags is not None:
            forward["num_tags"] = int(num_tags)
        if threshold is not None:
            forward["threshold"] = float(threshold)
        return {}, forward, {}

    def __call__(self, posts, batch_size=None, **kwargs):
        single = isinstance(posts, (str, dict))
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        forward_params = {**self._forward_params, **forward_params,
                          "batch_size": batch_size or self._batch_size or DEFAULT_BATCH_SIZE}
        outputs = self.run_single([posts] if single else list(posts), preprocess_params, forward_params,
                                  postprocess_params)
        return outputs[0] if single else outputs

    def preprocess(self, posts):
        return {"posts": posts}

    def _forward(self, model_inputs, num_tags=None, threshold=None, batch_size=DEFAULT_BATCH_SIZE):
        return self.model.generate_tags(model_inputs["posts"], self.tokenizer, num_tags=num_tags,
                                        threshold=threshold, batch_size=batch_size)

    def postprocess(self, generated):
        return [[{"label": tag, "score": score} for tag, score in tags] for tags in generated]


PIPELINE_REGISTRY.register_pipeline("tag-generation", pipeline_class=TagGenerationPipeline, pt_model=AutoModel,
                                    type="text")
