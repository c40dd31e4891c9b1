"""Inference Endpoints handler (ships to the Hub; imports only transformers, the stdlib and its sibling files).

Request:  {"inputs": post | [post, ...], "parameters": {"num_tags": 5, "threshold": 0.5, "empty_posts": "prior",
          "explain": true}}
          where a post is a string or a dict with any of text, image, location, time.
Response: [{"label": tag, "score": s, "step_probability": p}, ...] for one post, a list of such lists for a
          list of posts (tags in generation order; score: the estimated probability that the tag is in the set;
          with "explain" and a model with a lexical expert, each tag's "words" too).

Requests are bounded; each limit is an environment variable of the endpoint (default in brackets):
SOG_MAX_INPUTS [64] posts per request, SOG_MAX_NUM_TAGS [20] tags per post, SOG_MAX_BATCH_SIZE [64],
SOG_MAX_POST_CHARS [20000] characters per post (all fields together). A request over a limit, or with a bad
parameter or post, raises a ValueError/TypeError whose message names it.
"""

import os

from transformers import pipeline

try:
    from .inputs_sog import POST_DESCRIPTION, generation_options
except ImportError:  # loaded as a top-level file, as the inference toolkit does
    from inputs_sog import POST_DESCRIPTION, generation_options

LIMITS = {"SOG_MAX_INPUTS": 64, "SOG_MAX_NUM_TAGS": 20, "SOG_MAX_BATCH_SIZE": 64, "SOG_MAX_POST_CHARS": 20000}
PARAMETERS = ("num_tags", "top_k", "threshold", "empty_posts", "explain", "batch_size")


def read_limits(environ=os.environ) -> dict:
    limits = {}
    for name, default in LIMITS.items():
        value = environ.get(name, str(default))
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"environment variable {name} must be a whole number >= 1, got {value!r}")
        limits[name] = int(value)
    return limits


def post_length(post) -> int:
    if isinstance(post, str):
        return len(post)
    if isinstance(post, dict):
        return sum(len(value) for value in post.values() if isinstance(value, str))
    raise TypeError(f"{POST_DESCRIPTION}, got {type(post).__name__}")


class EndpointHandler:
    def __init__(self, path=""):
        self.limits = read_limits()
        self.pipe = pipeline("tag-generation", model=path or ".", trust_remote_code=True)

    def check(self, inputs, parameters: dict):
        """Refuse what the endpoint would spend unbounded time on, and what would fail deeper with a vaguer error."""
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; allowed: {list(PARAMETERS)}")
        limits = self.limits
        try:
            generation_options(num_tags=parameters.get("num_tags", parameters.get("top_k")),
                               threshold=parameters.get("threshold"), batch_size=parameters.get("batch_size"),
                               empty_posts=parameters.get("empty_posts"), explain=parameters.get("explain"),
                               max_num_tags=limits["SOG_MAX_NUM_TAGS"],
                               max_batch_size=limits["SOG_MAX_BATCH_SIZE"])
        except ValueError as error:
            raise ValueError(f"{error} (this endpoint's limits: SOG_MAX_NUM_TAGS={limits['SOG_MAX_NUM_TAGS']}, "
                             f"SOG_MAX_BATCH_SIZE={limits['SOG_MAX_BATCH_SIZE']})") from None
        posts = inputs if isinstance(inputs, list) else [inputs]
        if not posts:
            raise ValueError('"inputs" is an empty list; send a post or a non-empty list of posts')
        if len(posts) > limits["SOG_MAX_INPUTS"]:
            raise ValueError(f'"inputs" holds {len(posts)} posts; this endpoint takes at most '
                             f'{limits["SOG_MAX_INPUTS"]} per request (SOG_MAX_INPUTS)')
        for index, post in enumerate(posts):
            try:
                length = post_length(post)
            except TypeError as error:
                raise TypeError(f"inputs[{index}]: {error}") from None
            if length > limits["SOG_MAX_POST_CHARS"]:
                raise ValueError(f"inputs[{index}] has {length} characters; this endpoint takes at most "
                                 f'{limits["SOG_MAX_POST_CHARS"]} per post (SOG_MAX_POST_CHARS)')

    def __call__(self, data: dict):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('the request body must be a JSON object with an "inputs" field')
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError('"parameters" must be a JSON object such as {"num_tags": 5, "threshold": 0.5}')
        self.check(data["inputs"], parameters)
        return self.pipe(data["inputs"], **parameters)
