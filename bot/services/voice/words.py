"""The few words the bot adds when it speaks a message, in the message's language.

Cleanup puts them in place of markup ("a link", "someone", "a code block"); reading aloud says
who wrote a message and what they attached ("alice said", "bob sent an image"). A language
missing here is spoken with the English words; numbers, emoji and everything people wrote are
left to the voice.
"""

from __future__ import annotations

from typing import NamedTuple


class Words(NamedTuple):
    link: str
    someone: str
    role: str
    channel: str
    time: str
    cut: str  # appended to a message cut at the length limit
    code: str  # in place of a code block
    spoiler: str  # in place of a spoiler
    said: str  # "{name} said", before a new speaker's message
    sent: str  # "{name} sent {what}", for attachments
    image: str
    video: str
    audio: str
    voice: str  # a Discord voice message
    file: str
    files: str  # "{n} files": several attachments
    more: str  # "{n} more from {name}": a backlog cut short


ENGLISH = Words(
    "a link", "someone", "a role", "a channel", "a time", "… (message cut)", "a code block",
    "a spoiler", "{name} said", "{name} sent {what}", "an image", "a video", "an audio file",
    "a voice message", "a file", "{n} files", "…and {n} more from {name}",
)  # fmt: skip

WORDS: dict[str, Words] = {
    "en": ENGLISH,
    "fr": Words(
        "un lien", "quelqu'un", "un rôle", "un salon", "une heure", "… (message coupé)",
        "un bloc de code", "un spoiler", "{name} a dit", "{name} a envoyé {what}", "une image",
        "une vidéo", "un fichier audio", "un message vocal", "un fichier", "{n} fichiers",
        "…et {n} autres de {name}",
    ),
    "de": Words(
        "ein Link", "jemand", "eine Rolle", "ein Kanal", "eine Uhrzeit", "… (gekürzt)",
        "ein Codeblock", "ein Spoiler", "{name} sagt", "{name} hat {what} gesendet", "ein Bild",
        "ein Video", "eine Audiodatei", "eine Sprachnachricht", "eine Datei", "{n} Dateien",
        "…und {n} weitere von {name}",
    ),
    "es": Words(
        "un enlace", "alguien", "un rol", "un canal", "una hora", "… (mensaje cortado)",
        "un bloque de código", "un spoiler", "{name} dijo", "{name} envió {what}", "una imagen",
        "un vídeo", "un audio", "un mensaje de voz", "un archivo", "{n} archivos",
        "…y {n} más de {name}",
    ),
    "it": Words(
        "un link", "qualcuno", "un ruolo", "un canale", "un orario", "… (messaggio tagliato)",
        "un blocco di codice", "uno spoiler", "{name} ha detto", "{name} ha inviato {what}",
        "un'immagine", "un video", "un audio", "un messaggio vocale", "un file", "{n} file",
        "…e altri {n} da {name}",
    ),
    "pt": Words(
        "um link", "alguém", "um cargo", "um canal", "um horário", "… (mensagem cortada)",
        "um bloco de código", "um spoiler", "{name} disse", "{name} enviou {what}", "uma imagem",
        "um vídeo", "um áudio", "uma mensagem de voz", "um arquivo", "{n} arquivos",
        "…e mais {n} de {name}",
    ),
    "nl": Words(
        "een link", "iemand", "een rol", "een kanaal", "een tijd", "… (bericht ingekort)",
        "een codeblok", "een spoiler", "{name} zei", "{name} stuurde {what}", "een afbeelding",
        "een video", "een audiobestand", "een spraakbericht", "een bestand", "{n} bestanden",
        "…en nog {n} van {name}",
    ),
    "pl": Words(
        "link", "ktoś", "rola", "kanał", "godzina", "… (wiadomość skrócona)", "blok kodu",
        "spoiler", "{name} napisał(a)", "{name} wysłał(a) {what}", "obraz", "wideo",
        "plik audio", "wiadomość głosową", "plik", "plików: {n}", "…i jeszcze {n} od {name}",
    ),
    "ru": Words(
        "ссылка", "кто-то", "роль", "канал", "время", "… (сообщение обрезано)", "блок кода",
        "спойлер", "{name} пишет", "{name} отправляет {what}", "изображение", "видео",
        "аудиофайл", "голосовое сообщение", "файл", "файлов: {n}", "…и ещё {n} от {name}",
    ),
    "uk": Words(
        "посилання", "хтось", "роль", "канал", "час", "… (повідомлення обрізано)", "блок коду",
        "спойлер", "{name} пише", "{name} надсилає {what}", "зображення", "відео", "аудіофайл",
        "голосове повідомлення", "файл", "файлів: {n}", "…і ще {n} від {name}",
    ),
    "ja": Words(
        "リンク", "だれか", "ロール", "チャンネル", "時刻", "…（以下省略）", "コードブロック",
        "ネタバレ", "{name}さん", "{name}さんが{what}を送りました", "画像", "動画",
        "音声ファイル", "ボイスメッセージ", "ファイル", "ファイル{n}件",
        "…ほかに{name}さんから{n}件",
    ),
    "zh": Words(
        "一个链接", "某人", "一个身份组", "一个频道", "一个时间", "…（消息已截断）", "一段代码",
        "一段剧透", "{name}说", "{name}发送了{what}", "一张图片", "一段视频", "一个音频文件",
        "一条语音消息", "一个文件", "{n}个文件", "…还有{name}的{n}条消息",
    ),
    "ko": Words(
        "링크", "누군가", "역할", "채널", "시간", "… (메시지 잘림)", "코드 블록", "스포일러",
        "{name} 님의 말", "{name} 님이 {what}을 보냈습니다", "이미지", "동영상", "오디오 파일",
        "음성 메시지", "파일", "파일 {n}개", "…그리고 {name} 님의 메시지 {n}개 더",
    ),
}  # fmt: skip


def words_for(language: str) -> Words:
    """The words in `language` (by its language subtag), English when not known."""
    primary = language.strip().replace("_", "-").split("-", 1)[0].lower()
    return WORDS.get(primary, ENGLISH)
