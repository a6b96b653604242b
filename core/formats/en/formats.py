"""How the site shows dates and times (settings.FORMAT_MODULE_PATH): ISO-like, with the zone
named, so a time in the admin is never ambiguous: "2026-12-06 23:10:05 UTC" (times are in
settings.TIME_ZONE). The formats not set here are Django's English ones."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
