"""The licences the authoring form offers for a rights statement (docs/adr/0029).

Staff choose a licence by what it lets others do, in plain words (the staff catalogue's ``licence.<key>``); the
record gets the licence's URI, the form the ``rights`` field of the schemas (``common/v1#/$defs/rights``) accepts.
The seven Creative Commons 4.0 licences and the CC0 dedication cover open publication; "all rights reserved" is
RightsStatements.org's *In Copyright* (a URI for "no licence", which Creative Commons does not have). Any other
URI the schema accepts can still be typed (the picker's "another licence"), so no record becomes uneditable.

The node's operator picks the preset of new records by key (``default_licence`` in node.toml, node/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass

OTHER = "other"  # the picker's value for a URI typed by hand


@dataclass(frozen=True)
class Licence:
    key: str  # what the operator names in node.toml and the catalogue's licence.<key>
    uri: str  # what the record holds
    code: str  # its short name, the same in every language

    @property
    def message(self) -> str:
        return f"licence.{self.key}"


LICENCES: tuple[Licence, ...] = (
    Licence("cc0", "https://creativecommons.org/publicdomain/zero/1.0/", "CC0 1.0"),
    Licence("by", "https://creativecommons.org/licenses/by/4.0/", "CC BY 4.0"),
    Licence("by-sa", "https://creativecommons.org/licenses/by-sa/4.0/", "CC BY-SA 4.0"),
    Licence("by-nc", "https://creativecommons.org/licenses/by-nc/4.0/", "CC BY-NC 4.0"),
    Licence("by-nd", "https://creativecommons.org/licenses/by-nd/4.0/", "CC BY-ND 4.0"),
    Licence("by-nc-sa", "https://creativecommons.org/licenses/by-nc-sa/4.0/", "CC BY-NC-SA 4.0"),
    Licence("by-nc-nd", "https://creativecommons.org/licenses/by-nc-nd/4.0/", "CC BY-NC-ND 4.0"),
    Licence("all-rights-reserved", "http://rightsstatements.org/vocab/InC/1.0/", "InC 1.0"),
)
BY_KEY = {licence.key: licence for licence in LICENCES}
BY_URI = {licence.uri: licence for licence in LICENCES}


def preset_uri(key: str) -> str | None:
    """The URI of the licence an operator names (``""``: no preset, staff choose each time).

    Raises:
        KeyError: no licence has that key.
    """
    return BY_KEY[key].uri if key else None
