"""Tokenizers for fine-tuning, built or loaded without touching a model hub.

`build_byte_tokenizer` makes a byte-level tokenizer (each UTF-8 byte is one token, so any text
round-trips) for the tiny models that tests and demos train from scratch. `load_tokenizer` opens
the tokenizer saved next to a production base model. `encode_chats` turns chats into token ids and
labels in the house chat format (see `training_jobs.formatting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from training_jobs.errors import InvalidParametersError
from training_jobs.formatting import END_TOKEN, ROLE_TOKENS, Chat

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD_TOKEN: Final = "<|pad|>"
BOS_TOKEN: Final = "<|bos|>"
EOS_TOKEN: Final = "<|eos|>"
CHAT_TOKENS: Final = (
    ROLE_TOKENS["user"],
    ROLE_TOKENS["assistant"],
    ROLE_TOKENS["system"],
    END_TOKEN,
)
SPECIAL_TOKENS: Final = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, *CHAT_TOKENS)

IGNORE_INDEX: Final = -100
"""Label of a token that is fed to the model but not trained on (prompt, padding)."""


@dataclass(frozen=True)
class EncodedChat:
    """One chat as model input: `labels` is `input_ids` with untrained positions set to -100."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trainable_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """Return a byte-level tokenizer: byte b is token id b, then the special tokens from 256."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = _bytes_to_unicode()
    vocab = {byte_chars[byte]: byte for byte in range(256)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        additional_special_tokens=list(CHAT_TOKENS),
        padding_side="right",
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved in the local directory `path`; never downloads."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise InvalidParametersError(f"tokenizer directory {str(path)!r} does not exist")
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
        str(path), local_files_only=True
    )
    return tokenizer


def ensure_chat_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the chat and padding tokens `tokenizer` lacks; return how many were added.

    A model trained with a grown tokenizer needs `resize_token_embeddings(len(tokenizer))`.
    """
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    added: int = tokenizer.add_tokens(
        [AddedToken(token, special=True, normalized=False) for token in missing],
        special_tokens=True,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD_TOKEN
    if tokenizer.bos_token is None:
        tokenizer.bos_token = BOS_TOKEN
    if tokenizer.eos_token is None:
        tokenizer.eos_token = EOS_TOKEN
    return added


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """The id of the single token `token` in `tokenizer`'s vocabulary."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise KeyError(f"token {token!r} is not in the tokenizer's vocabulary")
    return int(vocab[token])


def encode_chats(
    tokenizer: PreTrainedTokenizerBase, chats: Sequence[Chat], *, max_length: int
) -> list[EncodedChat]:
    """Encode `chats` as ``<|bos|>`` then each message as in `render_chat`, then ``<|eos|>``.

    Only assistant contents, their ``<|end|>`` and the final ``<|eos|>`` are trained on.
    Message contents are encoded with special tokens split, so a row that contains
    ``<|end|>`` as text cannot forge a turn boundary. Sequences are cut to `max_length`.
    """
    contents = [f"\n{message['content']}" for chat in chats for message in chat]
    encoded_contents = iter(
        tokenizer(contents, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if contents
        else []
    )
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    role_ids = {role: token_id(tokenizer, token) for role, token in ROLE_TOKENS.items()}
    end_id = token_id(tokenizer, END_TOKEN)

    encoded = []
    for chat in chats:
        input_ids = [tokenizer.bos_token_id]
        labels = [IGNORE_INDEX]
        for message in chat:
            content_ids = next(encoded_contents)
            turn = [role_ids[message["role"]], *content_ids, end_id, *newline]
            input_ids += turn
            if message["role"] == "assistant":
                # Train on the content and the end marker, not on the role token or the newline
                # that only separates turns.
                labels += [IGNORE_INDEX, *content_ids, end_id, *[IGNORE_INDEX] * len(newline)]
            else:
                labels += [IGNORE_INDEX] * len(turn)
        input_ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id if chat[-1]["role"] == "assistant" else IGNORE_INDEX)
        encoded.append(EncodedChat(input_ids[:max_length], labels[:max_length]))
    return encoded


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of each byte to a printable character, which the ByteLevel steps expect."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = chr(256 + shifted)
            shifted += 1
    return chars
