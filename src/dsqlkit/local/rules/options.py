"""The startup ``options`` parameter read as PostgreSQL reads it: its own getopt rules.

PostgreSQL splits ``options`` into words (whitespace separates, a backslash escapes the next
character) and parses them with getopt and the switches of ``process_postgres_switches``
(``B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:``): switches cluster (``-ec name=value`` is ``-e``
then ``-c name=value``), a switch's argument is the rest of its word or the next word, and
``--name=value`` is ``-c name=value``. Every switch sets a server parameter (``-e`` DateStyle,
``-S`` work_mem, ``-P`` ignore_system_indexes, ...) or is for a standalone server only.
:func:`settings` returns the parameters the options would set, so that the caller can refuse the
ones a client may not set. Example::

    assert settings("-ec search_path=public") == ["datestyle", "search_path"]
    assert settings("-P") == ["ignore_system_indexes"]
"""

from __future__ import annotations

__all__ = ["InvalidOptions", "settings", "split_words"]

#: Switches taking an argument, and the parameter each sets (None: not a parameter at all).
_WITH_ARGUMENT = {
    "B": "shared_buffers",
    "C": None,
    "c": "",  # name=value
    "-": "",  # --name=value
    "D": "data_directory",
    "d": "log_min_messages",
    "f": "",  # -f s|i|o|b|t|n|m|h: turns an enable_* planner switch off (_FORBID)
    "h": "listen_addresses",
    "k": "unix_socket_directories",
    "N": "max_connections",
    "p": "port",
    "r": None,
    "S": "work_mem",
    "t": "log_statement_stats",
    "v": None,
    "W": "post_auth_delay",
}
#: Switches without an argument.
_FLAGS = {
    "b": None,
    "E": None,
    "e": "datestyle",
    "F": "fsync",
    "i": "listen_addresses",
    "j": None,
    "l": "ssl",
    "n": None,
    "O": "allow_system_table_mods",
    "P": "ignore_system_indexes",
    "s": "log_statement_stats",
    "T": None,
}


#: ``-f`` letters and the planner switch each turns off.
_FORBID = {
    "s": "enable_seqscan",
    "i": "enable_indexscan",
    "o": "enable_indexonlyscan",
    "b": "enable_bitmapscan",
    "t": "enable_tidscan",
    "n": "enable_nestloop",
    "m": "enable_mergejoin",
    "h": "enable_hashjoin",
}


class InvalidOptions(ValueError):
    """``options`` that PostgreSQL itself refuses (an unknown switch, a missing argument)."""


def split_words(options: str) -> list[str]:
    """Split ``options`` like PostgreSQL: on whitespace, a backslash escaping the next character."""
    words: list[str] = []
    current: list[str] = []
    chars = iter(options)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def settings(options: str) -> list[str]:
    """The parameters ``options`` sets, lower case; a switch that is no parameter as ``-X``.

    Raises :class:`InvalidOptions` for what PostgreSQL refuses: an unknown switch, a switch
    without its argument, ``-c name`` without a value, or a word that is no switch.
    """
    words = split_words(options)
    names: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            if index < len(words):
                raise InvalidOptions(f"invalid command-line argument: {words[index]}")
            break
        if len(word) < 2 or word[0] != "-":
            raise InvalidOptions(f"invalid command-line argument: {word}")
        pos = 1
        while pos < len(word):
            switch = word[pos]
            pos += 1
            if switch in _FLAGS:
                names.append(_FLAGS[switch] or f"-{switch}")
                continue
            if switch not in _WITH_ARGUMENT:
                raise InvalidOptions(f"invalid option -- '{switch}'")
            argument = word[pos:]
            if not argument:
                if index >= len(words):
                    raise InvalidOptions(f"option requires an argument -- '{switch}'")
                argument = words[index]
                index += 1
            names.append(_setting(switch, argument))
            break  # the argument took the rest of the word
    return names


def _setting(switch: str, argument: str) -> str:
    parameter = _WITH_ARGUMENT[switch]
    if parameter is None:
        return f"-{switch}"
    if parameter:
        return parameter
    if switch == "f":
        if argument not in _FORBID:
            raise InvalidOptions(f"-f {argument}: unknown plan type")
        return _FORBID[argument]
    name, equals, _ = argument.partition("=")
    if not equals:
        raise InvalidOptions(f"-c {argument} requires a value")
    return name.replace("-", "_").lower()
