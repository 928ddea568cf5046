r"""Discord's validation of application command bodies, with its nested 50035 error shape.

The rules are those of Discord's "Application Commands" docs: names 1-32 characters matching
`^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$` and lowercase for chat commands, descriptions
1-100, at most 25 options and 25 choices, required options first, subcommands only at the top.
"""

from __future__ import annotations

from typing import Any, Final

from spectacles.simulator._errors import ValidationError

__all__ = [
    "CHAT_INPUT",
    "MESSAGE_COMMAND",
    "OPTION_TYPES",
    "SUB_COMMAND",
    "SUB_COMMAND_GROUP",
    "USER_COMMAND",
    "FormErrors",
    "check_command",
]

CHAT_INPUT: Final = 1
USER_COMMAND: Final = 2
MESSAGE_COMMAND: Final = 3
COMMAND_TYPES: Final = (CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND)
SUB_COMMAND: Final = 1
SUB_COMMAND_GROUP: Final = 2
STRING, INTEGER, NUMBER = 3, 4, 10
OPTION_TYPES: Final = tuple(range(1, 12))
MAX_OPTIONS: Final = 25
MAX_CHOICES: Final = 25
MAX_STRING_LENGTH: Final = 6000
# Names, descriptions and choice names/values of a command and its options, added up.
MAX_COMBINED_CHARACTERS: Final = 4000
INTERACTION_CONTEXTS: Final = (0, 1, 2)
INSTALL_TYPES: Final = (0, 1)
_NAME_PUNCTUATION: Final = frozenset("-_'")
Path = tuple[str, ...]


class FormErrors:
    """Collects field errors into Discord's `errors` tree (`{"name": {"_errors": [...]}}`)."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Path, code: str, message: str) -> None:
        """Record one error at `path` (keys and list indexes as strings)."""
        node = self.tree
        for key in path:
            node = node.setdefault(key, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def raise_if_any(self) -> None:
        """50035 Invalid Form Body when anything was recorded."""
        if self.tree:
            raise ValidationError(50035, "Invalid Form Body", self.tree)


def _valid_chat_name(name: str) -> bool:
    return (
        1 <= len(name) <= 32
        and all(c.isalnum() or c in _NAME_PUNCTUATION or _indic(c) for c in name)
        and name == name.lower()
    )


def _indic(char: str) -> bool:
    # Devanagari and Thai vowel signs are marks, not alphanumerics, yet Discord allows them.
    return "\u0900" <= char <= "\u097f" or "\u0e00" <= char <= "\u0e7f"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_length(
    errors: FormErrors, path: Path, value: Any, low: int, high: int, *, required: bool = True
) -> None:
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    if not isinstance(value, str):
        errors.add(path, "STRING_TYPE_CONVERT", "Could not interpret value as string.")
    elif not low <= len(value) <= high:
        errors.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _check_name(errors: FormErrors, path: Path, name: Any, chat: bool) -> None:
    _check_length(errors, path, name, 1, 32)
    if isinstance(name, str) and 1 <= len(name) <= 32 and chat and not _valid_chat_name(name):
        errors.add(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _check_choice_list(
    errors: FormErrors, path: Path, values: Any, allowed: tuple[int, ...]
) -> None:
    if values is None:
        return
    if not isinstance(values, list) or any(v not in allowed for v in values):
        choices = ", ".join(str(a) for a in allowed)
        errors.add(path, "BASE_TYPE_CHOICES", f"Value must be one of {{{choices}}}.")


def check_command(body: Any, errors: FormErrors, path: Path = ()) -> None:
    """Validate a whole command body (create, bulk overwrite item, or merged PATCH result)."""
    if not isinstance(body, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    kind = body.get("type", CHAT_INPUT)
    if kind not in COMMAND_TYPES:
        errors.add((*path, "type"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3}.")
        return
    chat = kind == CHAT_INPUT
    _check_name(errors, (*path, "name"), body.get("name"), chat)
    description = body.get("description")
    if chat:
        _check_length(errors, (*path, "description"), description, 1, 100)
    elif description not in (None, ""):
        errors.add(
            (*path, "description"),
            "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
            "Context menu commands cannot have description",
        )
    options = body.get("options")
    if options not in (None, []) and not chat:
        errors.add(
            (*path, "options"),
            "APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS",
            "Context menu commands cannot have options",
        )
    elif options is not None:
        _check_options(errors, (*path, "options"), options, depth=0)
    permissions = body.get("default_member_permissions")
    if permissions is not None and not (
        (isinstance(permissions, str) and permissions.isdigit()) or _is_int(permissions)
    ):
        errors.add(
            (*path, "default_member_permissions"),
            "NUMBER_TYPE_COERCE",
            f'Value "{permissions}" is not int.',
        )
    _check_choice_list(errors, (*path, "contexts"), body.get("contexts"), INTERACTION_CONTEXTS)
    _check_choice_list(
        errors, (*path, "integration_types"), body.get("integration_types"), INSTALL_TYPES
    )
    if _combined_characters(body) > MAX_COMBINED_CHARACTERS:
        errors.add(
            path,
            "APPLICATION_COMMAND_TOO_LARGE",
            f"Command exceeds maximum size ({MAX_COMBINED_CHARACTERS})",
        )
    for flag in ("nsfw", "dm_permission", "default_permission"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            errors.add((*path, flag), "BASE_TYPE_BOOLEAN", "Must be either true or false.")


def _check_options(errors: FormErrors, path: Path, options: Any, depth: int) -> None:
    if not isinstance(options, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return
    if len(options) > MAX_OPTIONS:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_OPTIONS} or fewer in length.")
        return
    names: set[str] = set()
    seen_optional = False
    kinds = [o.get("type") for o in options if isinstance(o, dict)]
    nested = [k for k in kinds if k in (SUB_COMMAND, SUB_COMMAND_GROUP)]
    if nested and len(nested) != len(kinds):
        errors.add(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive to all other "
            "types",
        )
    for index, option in enumerate(options):
        here = (*path, str(index))
        if not isinstance(option, dict):
            errors.add(here, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        kind = option.get("type")
        if kind not in OPTION_TYPES:
            errors.add(
                (*here, "type"),
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.",
            )
            continue
        name = option.get("name")
        _check_name(errors, (*here, "name"), name, chat=True)
        if isinstance(name, str):
            if name in names:
                errors.add(
                    (*here, "name"),
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    "Option names must be unique",
                )
            names.add(name)
        _check_length(errors, (*here, "description"), option.get("description"), 1, 100)
        if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
            _check_nested(errors, here, option, kind, depth)
            continue
        if option.get("required", False):
            if seen_optional:
                errors.add(
                    (*here, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        _check_value_rules(errors, here, option, kind)


def _check_nested(
    errors: FormErrors, path: Path, option: dict[str, Any], kind: int, depth: int
) -> None:
    # A group holds sub-commands; a sub-command holds plain options; groups only at the top.
    if (kind == SUB_COMMAND_GROUP and depth > 0) or (kind == SUB_COMMAND and depth > 1):
        errors.add(
            (*path, "type"),
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command groups cannot be nested; sub-commands may only be in a group",
        )
        return
    children = option.get("options")
    if children is None:
        return
    if kind == SUB_COMMAND_GROUP and any(
        not isinstance(c, dict) or c.get("type") != SUB_COMMAND for c in children or []
    ):
        errors.add(
            (*path, "options"),
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command groups may only contain sub-commands",
        )
        return
    _check_options(errors, (*path, "options"), children, depth + 1)


def _check_value_rules(errors: FormErrors, path: Path, option: dict[str, Any], kind: int) -> None:
    choices = option.get("choices")
    if choices is not None:
        if kind not in (STRING, INTEGER, NUMBER):
            errors.add(
                (*path, "choices"),
                "APPLICATION_COMMAND_OPTION_CHOICES_TYPE_INVALID",
                "Choices are only allowed for string, integer and number options",
            )
        elif not isinstance(choices, list) or len(choices) > MAX_CHOICES:
            errors.add(
                (*path, "choices"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_CHOICES} or fewer in length.",
            )
        else:
            for index, choice in enumerate(choices):
                _check_choice(errors, (*path, "choices", str(index)), choice, kind)
        if option.get("autocomplete"):
            errors.add(
                (*path, "autocomplete"),
                "APPLICATION_COMMAND_OPTIONS_AUTOCOMPLETE_CHOICES",
                "Autocomplete cannot be enabled on options that have choices",
            )
    for bound in ("min_value", "max_value"):
        if bound in option and (kind not in (INTEGER, NUMBER) or not _is_number(option[bound])):
            errors.add((*path, bound), "NUMBER_TYPE_COERCE", f"{bound} needs a numeric option")
    for bound in ("min_length", "max_length"):
        value = option.get(bound)
        if value is not None and (
            kind != STRING or not _is_int(value) or not 0 <= value <= MAX_STRING_LENGTH
        ):
            errors.add(
                (*path, bound),
                "NUMBER_TYPE_MAX",
                f"Must be between 0 and {MAX_STRING_LENGTH} on a string option.",
            )


def _check_choice(errors: FormErrors, path: Path, choice: Any, kind: int) -> None:
    if not isinstance(choice, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    _check_length(errors, (*path, "name"), choice.get("name"), 1, 100)
    value = choice.get("value")
    if kind == STRING:
        _check_length(errors, (*path, "value"), value, 1, 100)
    elif kind == INTEGER and not _is_int(value):
        errors.add((*path, "value"), "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.')
    elif kind == NUMBER and not _is_number(value):
        errors.add((*path, "value"), "NUMBER_TYPE_COERCE", f'Value "{value}" is not a number.')


def _combined_characters(node: Any) -> int:
    if isinstance(node, list):
        return sum(_combined_characters(item) for item in node)
    if not isinstance(node, dict):
        return 0
    total = sum(
        len(str(node[key])) for key in ("name", "description", "value") if node.get(key) is not None
    )
    return (
        total
        + _combined_characters(node.get("options"))
        + _combined_characters(node.get("choices"))
    )
