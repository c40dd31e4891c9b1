"""Inference Endpoints handler (ships to the Hub; imports only transformers).

Request:  {"inputs": post | [post, ...], "parameters": {"num_tags": 5, "threshold": 0.0}}
          where a post is a string or a dict with any of text, image, location, time.
Response: [{"label": tag, "score": p}, ...] for one post, a list of such lists for a list of posts.
"""

from transformers import pipeline


class EndpointHandler:
    def __init__(self, path=""):
        self.pipe = pipeline("tag-generation", model=path or ".", trust_remote_code=True)

    def __call__(self, data: dict):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('the request body must be a JSON object with an "inputs" field')
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError('"parameters" must be a JSON object such as {"num_tags": 5, "threshold": 0.0}')
        return self.pipe(data["inputs"], **parameters)
