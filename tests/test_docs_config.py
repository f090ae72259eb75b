"""docs/configuration.md lists every configuration key with its true default."""

from __future__ import annotations

from pathlib import Path

from ptychopinn_core.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def reference_rows() -> list[str]:
    rows = []
    for section, values in Config().to_dict().items():
        fields = type(getattr(Config(), section)).model_fields
        for key, default in values.items():
            description = fields[key].description or ""
            rows.append(f"| `{section}.{key}` | `{default!r}` | {description} |")
    return rows


def test_every_key_is_documented_with_its_default():
    text = DOC.read_text()
    missing = [row for row in reference_rows() if row not in text]
    assert not missing, "docs/configuration.md is stale; regenerate rows:\n" + "\n".join(missing)


if __name__ == "__main__":  # regenerate the table: python tests/test_docs_config.py
    print("\n".join(reference_rows()))
