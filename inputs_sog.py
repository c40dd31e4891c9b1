"""The inputs of a tagging request, checked: posts (their fields) and generation options (ships to the Hub;
stdlib only).

Training and inference both call ``post_fields``, so the Hub model accepts exactly the raw fields the
dataset builders write: ``text``, ``image`` (a description), ``location`` and ``time`` (ISO-8601).
``generation_options`` is the one check of ``num_tags``/``threshold``/``batch_size``/``empty_posts`` that
``generate_tags``, the pipeline, the handler and the command line share.
"""

import math
import numbers
from datetime import datetime

POST_FIELDS = ("text", "image", "location", "time")
POST_DESCRIPTION = f"a post is a string (its text) or a dict with any of the keys {POST_FIELDS}"
# What generate_tags does with a post whose fields are all empty.
EMPTY_POST_POLICIES = ("prior", "none", "error")


class EmptyPostError(ValueError):
    """A post with no text and no other field, under ``empty_posts="error"``: the caller's data, not a bug."""

_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
            6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}


def part_of_day(hour: int) -> str:
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 21:
        return "evening"
    return "night"


def parse_timestamp(timestamp: str) -> datetime:
    """ISO-8601, as ``datetime.fromisoformat`` reads it on Python 3.11, also on 3.10 (trailing ``Z``)."""
    text = timestamp.strip()
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat rejects the UTC designator
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def time_to_words(timestamp: str) -> str:
    """``"2020-07-01T14:52:00"`` -> ``"summer weekday afternoon"``.

    Seasons are those of the northern hemisphere; the clock time is read as written (local time of the
    post when the source records it, else UTC).
    """
    try:
        moment = parse_timestamp(timestamp)
    except ValueError:
        raise ValueError(f"post field 'time' is not an ISO-8601 timestamp: {timestamp!r}") from None
    day_kind = "weekend" if moment.weekday() >= 5 else "weekday"
    return f"{_SEASONS[moment.month]} {day_kind} {part_of_day(moment.hour)}"


def post_fields(post) -> tuple[str, str, str, str]:
    """Return ``(image, location, time_words, text)`` of a post, stripped, each possibly empty.

    A post is a string (its text) or a dict with any of ``text``, ``image``, ``location``, ``time``;
    ``None`` values count as empty. Unknown keys are an error, so a typo never silently drops a field.
    """
    if isinstance(post, str):
        return "", "", "", post.strip()
    if not isinstance(post, dict):
        raise TypeError(f"{POST_DESCRIPTION}, got {type(post).__name__} {_preview(post)}")
    unknown = sorted(set(post) - set(POST_FIELDS))
    if unknown:
        raise ValueError(f"unknown post field(s) {unknown}; expected any of {POST_FIELDS}")
    values = {}
    for name in POST_FIELDS:
        value = post.get(name)
        value = "" if value is None else value
        if not isinstance(value, str):
            raise TypeError(f"post field {name!r} must be a string, got {type(value).__name__}")
        values[name] = value.strip()
    time_words = time_to_words(values["time"]) if values["time"] else ""
    return values["image"], values["location"], time_words, values["text"]


def _preview(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_empty_post(fields) -> bool:
    return not any(fields)


# ----- request parameters ---------------------------------------------------------------------------------
def _whole_number(name: str, value, minimum: int, maximum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def generation_options(num_tags=None, threshold=None, batch_size=None, empty_posts=None, explain=None, *,
                       max_num_tags=None, max_batch_size=None) -> dict:
    """Check the parameters of a tagging request; return them normalised (``None`` stays ``None``).

    num_tags: a whole number >= 1 (at most ``max_num_tags`` when given). threshold: a number in [0, 1] that a
    tag's ``score`` must reach. batch_size: a whole number >= 1 (at most ``max_batch_size``). empty_posts: one
    of ``EMPTY_POST_POLICIES``. explain: true or false. Every violation is a ``ValueError`` that names the
    parameter and its range.
    """
    options = {"num_tags": None, "threshold": None, "batch_size": None, "empty_posts": None, "explain": None}
    if num_tags is not None:
        options["num_tags"] = _whole_number("num_tags", num_tags, 1, max_num_tags)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold) \
                or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number from 0 to 1 (a tag's score), got {threshold!r}")
        options["threshold"] = float(threshold)
    if batch_size is not None:
        options["batch_size"] = _whole_number("batch_size", batch_size, 1, max_batch_size)
    if empty_posts is not None:
        if empty_posts not in EMPTY_POST_POLICIES:
            raise ValueError(f"empty_posts must be one of {EMPTY_POST_POLICIES}, got {empty_posts!r}")
        options["empty_posts"] = empty_posts
    if explain is not None:
        if not isinstance(explain, bool):
            raise ValueError(f"explain must be true or false, got {explain!r}")
        options["explain"] = explain
    return options
