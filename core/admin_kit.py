"""What the admin pages share: forms that refuse what the API refuses, the confirmation
page in front of every action that sends, cancels, revokes or deletes, times shown with
their zone, short ids, links between the pages, the admin's small style sheet, and what a
changelist over millions of rows needs (a paginator that does not count the table, a
time-range filter)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from .validation import untrusted_text_problem

CONFIRM_TEMPLATE = "admin/confirm_action.html"
LISTED = 100  # objects named on a confirmation page
# An id in lists: its first and last characters (the whole id in its title). Time-ordered ids
# (uuid7) share their first characters with every row written in the same minute; the last
# ones are random.
SHORT_ID_HEAD, SHORT_ID_TAIL = 8, 6
EMPTY = "—"


class AdminMedia:
    """The admin's own style sheet (ids in monospace that never wrap, funnel tables, diffs),
    served from core/static like Django's own; a ModelAdmin takes it as `Media = AdminMedia`."""

    css = {"all": ["core/admin_kit.css"]}


def zoned(moment: datetime | None, *, seconds: bool = True) -> str:
    """A time in the site's zone (settings.TIME_ZONE) with the zone named:
    "2026-12-06 23:10:05 UTC"; "—" for none."""
    if moment is None:
        return EMPTY
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z").strip()


def shortened(value) -> str:
    """ "01a24da5-a7b0-7538-b4fd-69914dda1a8f" as "01a24da5…da1a8f"."""
    full = str(value)
    if len(full) <= SHORT_ID_HEAD + SHORT_ID_TAIL + 1:
        return full
    return f"{full[:SHORT_ID_HEAD]}…{full[-SHORT_ID_TAIL:]}"


def short_id(value, *, url: str | None = None) -> str:
    """An id shortened in monospace, the whole id in the title (shown on hover), linked to
    `url` when given."""
    if value in (None, ""):
        return EMPTY
    full = str(value)
    if url:
        return format_html(
            '<a class="signal-id" href="{}" title="{}">{}</a>', url, full, shortened(full)
        )
    return format_html('<span class="signal-id" title="{}">{}</span>', full, shortened(full))


def change_url(app_label: str, model: str, pk) -> str | None:
    """The admin change page of an object (None when its model is not in the admin)."""
    try:
        return reverse(f"admin:{app_label}_{model}_change", args=[pk])
    except NoReverseMatch:
        return None


def changelist_url(app_label: str, model: str, **filters) -> str:
    """An admin changelist, filtered by the given field lookups."""
    url = reverse(f"admin:{app_label}_{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def linked(app_label: str, model: str, pk, text: str | None = None) -> str:
    """A link to an object's change page: its text, or its short id."""
    if pk in (None, ""):
        return EMPTY
    url = change_url(app_label, model, pk)
    if text is None:
        return short_id(pk, url=url)
    return format_html('<a href="{}">{}</a>', url, text) if url else text


def zoned_column(name: str, description: str | None = None):
    """A list column (or read-only field) of a model's datetime field, shown by `zoned` and
    sortable by the field."""

    @admin.display(description=description or name.replace("_", " "), ordering=name)
    def column(obj):
        return zoned(getattr(obj, name))

    column.__name__ = f"{name}_zoned"
    return column


class StorableJSONField(forms.JSONField):
    """A JSON form field that refuses what the database cannot store (see StorableTextForm),
    and that can put any value back into the page."""

    def validate(self, value):
        super().validate(value)
        problem = untrusted_text_problem(value)
        if problem:
            raise forms.ValidationError(problem, code="invalid")

    def prepare_value(self, value):
        text = super().prepare_value(value)
        # A lone surrogate (sent as a `\ud800` escape) goes back as that escape: the page is
        # UTF-8, which cannot carry it, and the re-sent form then reads the same value.
        return text.encode("utf-8", "backslashreplace").decode() if isinstance(text, str) else text


class StorableTextForm(forms.ModelForm):
    """Turns text the database cannot store (NUL, lone surrogates; in plain fields and inside
    JSON) into a form error on its field, instead of a failed write and a 500."""

    def clean(self):
        cleaned = super().clean()
        for name, value in list(cleaned.items()):
            problem = untrusted_text_problem(value)
            if problem:
                self.add_error(name, problem)
        return cleaned


def add_serializer_errors(
    form: forms.Form, errors: Mapping[str, Any], fields: Mapping[str, str] | None = None
) -> None:
    """Shows an API input serializer's errors on the form: each under its field (`fields`
    maps the API's names to the form's; a dotted name such as `email.subject` by its first
    part), the rest above the form, the API's own messages."""
    fields = fields or {}
    for name, problems in errors.items():
        field = fields.get(name) or fields.get(name.partition(".")[0], name)
        if field not in form.fields:
            field = None
        form.add_error(field, _flat(problems, "" if field else name))


def _flat(problems: Any, path: str) -> list[str]:
    """DRF's nested errors ({"tags": {"plan": ["Not a valid string."]}}) as messages that
    name where each problem is."""
    if isinstance(problems, Mapping):
        return [
            message
            for key, value in problems.items()
            for message in _flat(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(problems, list | tuple):
        return [message for problem in problems for message in _flat(problem, path)]
    return [f"{path}: {problems}" if path else str(problems)]


def confirmation(
    modeladmin: admin.ModelAdmin,
    request,
    *,
    title: str,
    consequences: Iterable[str],
    objects: Iterable[Any],
    action: str | None = None,
    action_url: str = "",
    button: str = "Yes, I'm sure",
) -> TemplateResponse | None:
    """None once the request carries the confirmation (a POST with `confirm=yes`); else the
    page that lists what will happen and asks for it, posting back to the same action (a
    changelist `action` with its selected ids, or `action_url`). A GET never confirms."""
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        return None
    # "Select all N" acts on the filtered changelist, which may be millions of rows: the page
    # then carries the selection (and the filters, in its URL), not every id.
    select_across = request.POST.get("select_across") == "1"
    objects = list(islice(objects, LISTED + 1 if select_across else None))
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "consequences": list(consequences),
        "objects": objects,
        "action": action,
        "action_url": action_url,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "button": button,
        "select_across": select_across,
        "listed": LISTED,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


class EstimatedCountPaginator(Paginator):
    """A paginator whose count does not read a large table. Unfiltered, it is the planner's
    estimate of the table's rows (pg_class.reltuples, kept by autovacuum's ANALYZE); filtered,
    rows are counted up to COUNT_UP_TO within COUNT_TIMEOUT_MS, and when there are more, or
    counting them takes longer (rare matches in a large table), the planner's estimate of the
    filtered query stands in. Pages past the real end are simply empty. Use with
    `show_full_result_count = False`, which spares the second, unfiltered count."""

    COUNT_UP_TO = 10_000
    COUNT_TIMEOUT_MS = 100

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        db = connections[queryset.db]
        if db.vendor != "postgresql":
            return super().count
        if not queryset.query.where:
            estimate = _table_estimate(db, queryset.model._meta.db_table)
            if estimate is not None and estimate >= self.COUNT_UP_TO:
                return estimate
        counted = _count_within(queryset, self.COUNT_UP_TO + 1, self.COUNT_TIMEOUT_MS)
        if counted is not None and counted <= self.COUNT_UP_TO:
            return counted
        return max(counted or 0, _query_estimate(db, queryset))


def _count_within(queryset, up_to: int, timeout_ms: int) -> int | None:
    """The queryset's rows counted up to `up_to`, or None if that takes over `timeout_ms`
    (the count is cancelled by PostgreSQL's statement_timeout, in a savepoint)."""
    db = connections[queryset.db]
    try:
        with transaction.atomic(using=queryset.db), db.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('statement_timeout'),"
                " set_config('statement_timeout', %s, true)",
                [str(timeout_ms)],
            )
            previous = cursor.fetchone()[0]
            counted = queryset.order_by()[:up_to].count()
            # Put back for the rest of an enclosing transaction (a savepoint keeps it).
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
            return counted
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == "57014":  # query_canceled
            return None
        raise


def _table_estimate(db, table: str) -> int | None:
    """The planner's row count of `table`; None before its first ANALYZE."""
    with db.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return row[0] if row and row[0] >= 0 else None


def _query_estimate(db, queryset) -> int:
    """The planner's row estimate of `queryset` (EXPLAIN without running it)."""
    sql, params = queryset.order_by().query.sql_with_params()
    with db.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class ReadOnlyAdmin:
    """A ModelAdmin mixin for records that are only ever written by the system (event logs,
    template versions, campaign runs): the pages show them, nobody adds, edits or deletes."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LargeTableAdmin:
    """What a ModelAdmin over tens of millions of rows needs (mixed in before ModelAdmin):
    no count of the table (EstimatedCountPaginator, no full count, no facet counts), and its
    list read without parallel workers. A filtered page ordered by key and cut to a page
    (`ORDER BY id DESC LIMIT 100` with a selective filter) walks the key's index backwards
    and stops at 100 rows; planned in parallel, each worker keeps scanning its part of the
    index until it finds a row for the merge, which reads the whole table when matches are
    rare (200 ms against 18 ms at 200,000 messages)."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def changelist_view(self, request, extra_context=None):
        if request.method != "GET":  # actions keep their own transactions
            return super().changelist_view(request, extra_context)
        using = self.model._default_manager.db
        with transaction.atomic(using=using):
            with connections[using].cursor() as cursor:
                cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()  # the list is read while the page renders
            return response


class RecentTimeFilter(admin.DateFieldListFilter):
    """A time-range filter for a datetime column: the last hour, 24 hours, 7 days (from the
    current minute, so a link stays selected while it is used), and any range given by
    `<field>__gte` / `<field>__lt` in the URL (the console's links), shown as such."""

    RANGES = (("Last hour", timedelta(hours=1)), ("Last 24 hours", timedelta(days=1)),
              ("Last 7 days", timedelta(days=7)))  # fmt: skip

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        now = timezone.now().replace(second=0, microsecond=0)
        self.links = (
            ("Any time", {}),
            *((title, {self.lookup_kwarg_since: now - span}) for title, span in self.RANGES),
        )
        chosen = {k: v for k, v in self.date_params.items() if not k.endswith("isnull")}
        known = [{k: str(v) for k, v in link.items()} for _title, link in self.links]
        if chosen and chosen not in known:
            since, until = chosen.get(self.lookup_kwarg_since), chosen.get(self.lookup_kwarg_until)
            self.links += ((f"From {since or 'the start'} to {until or 'now'}", chosen),)

    def get_facet_counts(self, pk_attname, filtered_qs):
        return {}  # no counts per range over a large table


def exact_value_filter(field_name: str, title: str) -> type[admin.SimpleListFilter]:
    """A list filter on one column's exact value given in the URL (`?<field>=<value>`, as the
    console links to), offering no list of values: reading them would scan the table."""

    class ExactValueFilter(admin.SimpleListFilter):
        parameter_name = field_name

        def lookups(self, request, model_admin):
            value = self.value()
            return [(value, value)] if value else []

        def has_output(self) -> bool:
            return True

        def queryset(self, request, queryset):
            value = self.value()
            return queryset.filter(**{field_name: value}) if value else queryset

    ExactValueFilter.title = title
    ExactValueFilter.__name__ = ExactValueFilter.__qualname__ = f"{field_name.title()}Filter"
    return ExactValueFilter
