"""The alert action panel: acknowledge, snooze (for how long, why) and resolve (why).

The same panel sits on the ward and patient pages; each page owns its callbacks, so the
ids carry the page's prefix: `{prefix}-ack`, `{prefix}-snooze`, `{prefix}-resolve`,
`{prefix}-reason`, `{prefix}-snooze-hours`, `{prefix}-action-target` and
`{prefix}-action-message`.
"""

from __future__ import annotations

from dash import dcc, html

from riskcast.dashboards.components.text import KIND_LABELS, STATE_LABELS

SNOOZE_CHOICES_HOURS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _hours_label(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:g} h"


def action_panel(prefix: str, *, may_act: bool, max_snooze_hours: float, role_name: str) -> html.Div:
    """The panel. For roles that may not act on alerts the controls stay in the page (the
    page's callbacks need their ids) but are hidden and disabled, with a sentence instead."""
    choices = [h for h in SNOOZE_CHOICES_HOURS if h <= max_snooze_hours] or [max_snooze_hours]
    note = [] if may_act else [html.P(f"Your role ({role_name}) can see alerts but not act on them.", className="rc-muted")]
    return html.Div(
        [
            html.H2("Alert actions"),
            *note,
            html.Div(controls(prefix, choices), className="rc-actions", style=None if may_act else {"display": "none"}),
        ],
        className="rc-card rc-actions",
        id=f"{prefix}-actions",
    )


def controls(prefix: str, choices: list[float]) -> list:
    """The target line, reason, snooze length, the three buttons and the result line."""
    return [
            html.Div("Select a patient with an alert.", id=f"{prefix}-action-target", className="rc-action-target"),
            html.Div(
                [
                    dcc.Input(
                        id=f"{prefix}-reason",
                        type="text",
                        placeholder="Reason (needed to snooze or resolve)",
                        maxLength=500,
                        debounce=False,
                        className="rc-input",
                    ),
                    dcc.Dropdown(
                        id=f"{prefix}-snooze-hours",
                        options=[{"label": f"Snooze {_hours_label(h)}", "value": h} for h in choices],
                        value=choices[min(1, len(choices) - 1)],
                        clearable=False,
                        searchable=False,
                        className="rc-snooze-hours",
                    ),
                ],
                className="rc-action-controls",
            ),
            html.Div(
                [
                    html.Button("Acknowledge", id=f"{prefix}-ack", className="rc-button rc-button-primary", disabled=True),
                    html.Button("Snooze", id=f"{prefix}-snooze", className="rc-button", disabled=True),
                    html.Button("Resolve", id=f"{prefix}-resolve", className="rc-button", disabled=True),
                ],
                className="rc-action-controls",
            ),
            html.Div(id=f"{prefix}-action-message", role="status"),
    ]


def target_text(kind: str | None, state: str | None, raised: str) -> str:
    """"Risk alert · Escalated · raised 09:05"."""
    if not kind or not state:
        return "No open alert for this patient."
    return f"{KIND_LABELS.get(kind, kind)} · {STATE_LABELS.get(state, state)} · raised {raised}"


def message(outcome_ok: bool, text: str) -> html.Span:
    """The result line under the buttons."""
    return html.Span(text, className="rc-message-ok" if outcome_ok else "rc-message-error")
