"""Language codes for speech, to suggest as people type (`/language`).

Any code the engines understand can be set; these are the ones people pick most, with the
name shown next to each suggestion.
"""

from __future__ import annotations

COMMON_LANGUAGES: tuple[tuple[str, str], ...] = (
    ("en-US", "English (United States)"),
    ("en-GB", "English (United Kingdom)"),
    ("en-AU", "English (Australia)"),
    ("en-IN", "English (India)"),
    ("fr-FR", "French (France)"),
    ("fr-CA", "French (Canada)"),
    ("de-DE", "German"),
    ("es-ES", "Spanish (Spain)"),
    ("es-MX", "Spanish (Mexico)"),
    ("it-IT", "Italian"),
    ("pt-BR", "Portuguese (Brazil)"),
    ("pt-PT", "Portuguese (Portugal)"),
    ("nl-NL", "Dutch"),
    ("sv-SE", "Swedish"),
    ("da-DK", "Danish"),
    ("nb-NO", "Norwegian"),
    ("fi-FI", "Finnish"),
    ("pl-PL", "Polish"),
    ("cs-CZ", "Czech"),
    ("ru-RU", "Russian"),
    ("uk-UA", "Ukrainian"),
    ("tr-TR", "Turkish"),
    ("el-GR", "Greek"),
    ("ar-SA", "Arabic"),
    ("he-IL", "Hebrew"),
    ("hi-IN", "Hindi"),
    ("ja-JP", "Japanese"),
    ("ko-KR", "Korean"),
    ("zh-CN", "Chinese (Mandarin, simplified)"),
    ("zh-TW", "Chinese (Mandarin, traditional)"),
    ("id-ID", "Indonesian"),
    ("vi-VN", "Vietnamese"),
    ("th-TH", "Thai"),
)


def matching_languages(text: str, limit: int = 25) -> list[tuple[str, str]]:
    """(label, code) of the common languages whose code or name matches `text`: codes that
    start with it first, then names that contain it."""
    needle = text.strip().lower().replace("_", "-")
    starts = [(c, n) for c, n in COMMON_LANGUAGES if c.lower().startswith(needle)]
    contains = [
        (c, n)
        for c, n in COMMON_LANGUAGES
        if (c, n) not in starts and (needle in n.lower() or needle in c.lower())
    ]
    return [(f"{code} — {name}", code) for code, name in (starts + contains)[:limit]]
