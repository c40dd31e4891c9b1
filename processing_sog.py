"""Turning a raw post into the text fields the model reads (ships to the Hub; stdlib only).

Training and inference both call ``post_fields``, so the Hub model accepts exactly the raw fields the
dataset builders write: ``text``, ``image`` (a description), ``location`` and ``time`` (ISO-8601).
"""

from datetime import datetime

POST_FIELDS = ("text", "image", "location", "time")

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


def time_to_words(timestamp: str) -> str:
    """``"2020-07-01T14:52:00"`` -> ``"summer weekday afternoon"``.

    Seasons are those of the northern hemisphere; the clock time is read as written (local time of the
    post when the source records it, else UTC).
    """
    try:
        moment = datetime.fromisoformat(timestamp.strip())
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
        raise TypeError(f"a post must be a str or a dict with keys {POST_FIELDS}, got {type(post).__name__}")
    unknown = sorted(set(post) - set(POST_FIELDS))
    if unknown:
        raise ValueError(f"unknown post field(s) {unknown}; expected any of {POST_FIELDS}")
    values = {}
    for name in POST_FIELDS:
        value = post.get(name) or ""
        if not isinstance(value, str):
            raise TypeError(f"post field {name!r} must be a string, got {type(value).__name__}")
        values[name] = value.strip()
    time_words = time_to_words(values["time"]) if values["time"] else ""
    return values["image"], values["location"], time_words, values["text"]
