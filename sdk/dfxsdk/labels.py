"""Class labels stored in a model's metadata (spec/format.md 7.2, key ``labels``)."""

from __future__ import annotations

from .graph import Model

#: Metadata key of the class labels: UTF-8 text, one label per line ("\n"), line i names class i.
LABELS_KEY = "labels"


def encode_labels(labels: list[str]) -> str:
    """The metadata value for ``labels`` (none may contain a line break)."""
    for i, label in enumerate(labels):
        if "\n" in label or "\r" in label:
            raise ValueError(f"label {i} contains a line break")
    return "\n".join(labels)


def model_labels(model: Model) -> list[str]:
    """The class labels stored in ``model`` ([] when it has none)."""
    text = model.metadata.get(LABELS_KEY, "")
    return text.split("\n") if text else []
