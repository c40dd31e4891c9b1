"""The ``"tag-generation"`` pipeline (ships to the Hub; imports only transformers and its sibling files).

>>> tagger = pipeline("tag-generation", model=folder, trust_remote_code=True)     # doctest: +SKIP
>>> tagger("How do I merge two dataframes?", num_tags=3)                          # doctest: +SKIP
[{'label': 'pandas', 'score': 0.83, 'step_probability': 0.31}, {'label': 'python', ...}, ...]

A post is a string or a dict with any of ``text``, ``image``, ``location``, ``time``. A list of posts
returns one list per post and is generated in batches (``batch_size``, default 32) by the model's own
``generate_tags``, which the pipeline, ``handler.py``, the command line and evaluation all share.

Tags come in generation order (the order the model chose them, not sorted by score); ``score`` is the
estimated probability that the tag belongs to the post's set (see ``generate_tags``). Parameters:
``num_tags`` (or its alias ``top_k``), ``threshold`` (a score in [0, 1]), ``empty_posts``, ``explain`` (models
with a lexical expert: each tag's ``words``) and ``batch_size``; each is checked by
``inputs_sog.generation_options``.
"""

from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

try:
    from .inputs_sog import generation_options
except ImportError:  # imported as a top-level module (development checkout)
    from inputs_sog import generation_options

TASK = "tag-generation"
DEFAULT_BATCH_SIZE = 32


class TagGenerationPipeline(Pipeline):
    _load_tokenizer = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_processor = False

    def _sanitize_parameters(self, num_tags=None, top_k=None, threshold=None, empty_posts=None, explain=None,
                             **unused):
        if unused:
            raise TypeError(f"{TASK} got unexpected parameter(s) {sorted(unused)}; it takes num_tags (or top_k), "
                            "threshold, empty_posts, explain and batch_size")
        if num_tags is not None and top_k is not None and num_tags != top_k:
            raise ValueError(f"top_k is another name for num_tags; got num_tags={num_tags!r} and top_k={top_k!r}")
        options = generation_options(num_tags=num_tags if num_tags is not None else top_k, threshold=threshold,
                                     empty_posts=empty_posts, explain=explain)
        return {}, {name: value for name, value in options.items() if value is not None}, {}

    def __call__(self, posts, batch_size=None, **kwargs):
        single = isinstance(posts, (str, dict))
        if not single and not isinstance(posts, (list, tuple)):
            raise TypeError(f"{TASK} takes a post (a string or a dict with any of text, image, location, time) or "
                            f"a list of posts, got {type(posts).__name__}")
        batch_size = generation_options(batch_size=batch_size)["batch_size"] or self._batch_size or DEFAULT_BATCH_SIZE
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        forward_params = {**self._forward_params, **forward_params, "batch_size": batch_size}
        outputs = self.run_single([posts] if single else list(posts), preprocess_params, forward_params,
                                  postprocess_params)
        return outputs[0] if single else outputs

    def preprocess(self, posts):
        return {"posts": posts}

    def _forward(self, model_inputs, **generation):
        return self.model.generate_tags(model_inputs["posts"], self.tokenizer, **generation)

    def postprocess(self, generated):
        return generated


def _register():
    """Register the task once per process. transformers loads remote code once per folder hash, so a model and
    its pipeline can bring two copies of this file; the second copy only records where its class belongs
    (``_registered_impl``, which ``Pipeline.save_pretrained`` reads) instead of overwriting, with a warning,
    what the first registered."""
    impl = {"impl": TagGenerationPipeline, "pt": (AutoModel,), "type": "text"}
    if TASK in PIPELINE_REGISTRY.get_supported_tasks():
        TagGenerationPipeline._registered_impl = {TASK: impl}
    else:
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=TagGenerationPipeline, pt_model=AutoModel, type="text")


_register()
