"""Pictures of a workflow: Mermaid source (transitions' Mermaid backend) and a self-drawn SVG.

The SVG needs no script or external asset, so the HTML report works offline.
"""

from __future__ import annotations

from html import escape

from kamflow.definitions.spec import EVERY_STAGE
from kamflow.definitions.workflow import Workflow
from kamflow.text import plural

BOX_W, BOX_H, GAP = 120, 44, 64
ROW_Y, EXIT_Y, MARGIN = 130, 270, 20


def mermaid(definition: Workflow) -> str:
    """A Mermaid state diagram of the workflow, drawn by transitions' GraphMachine."""
    from transitions.extensions import GraphMachine

    class _Model:
        stage = definition.initial

    spec = definition.spec
    machine = GraphMachine(
        model=_Model(),
        states=definition.places,
        transitions=[
            {"trigger": t.name, "source": definition.sources(t), "dest": t.dest}
            for t in spec.transitions
        ],
        initial=definition.intake_names[0] if definition.intake_names else definition.initial,
        auto_transitions=False,
        graph_engine="mermaid",
        model_attribute="stage",
        title=spec.title,
    )
    lines = []
    for line in str(machine.get_graph().draw(None)).splitlines():
        stripped = line.strip()
        if stripped.startswith("Class ") and stripped.endswith("s_active"):
            line = line.replace("s_active", "s_default")  # a definition has no current state
        for name in definition.places:
            if stripped == f'state "{name}" as {name}':
                line = line.replace(f'"{name}"', f'"{definition.title_of(name)}"')
        lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"


def svg(definition: Workflow) -> str:
    """The workflow as inline SVG: the cycle left to right, moves back arched above, exits below."""
    row = definition.places[: len(definition.intake_names) + len(definition.stage_names)]
    exits = definition.exit_names
    x_of = {name: MARGIN + index * (BOX_W + GAP) for index, name in enumerate(row)}
    width = MARGIN * 2 + len(row) * BOX_W + (len(row) - 1) * GAP
    span = width - 2 * MARGIN
    for index, name in enumerate(exits):
        x_of[name] = MARGIN + (index + 1) * span // (len(exits) + 1) - BOX_W // 2
    height = EXIT_Y + BOX_H + MARGIN if exits else ROW_Y + BOX_H + MARGIN
    marker = f"arrow-{definition.name}"  # one page may draw several workflows
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="workflow" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(definition.spec.title)}">',
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    index_of = {name: i for i, name in enumerate(row)}
    for transition in definition.spec.transitions:
        label = escape(transition.name)
        if definition.is_exit(transition.dest):
            x = x_of[transition.dest] + BOX_W // 2
            where = (
                "any stage" if EVERY_STAGE in transition.source else ", ".join(transition.source)
            )
            parts.append(
                f'<path d="M{x},{ROW_Y + BOX_H + 14} L{x},{EXIT_Y}" stroke="#999" '
                f'stroke-dasharray="4 3" fill="none" marker-end="url(#{marker})"/>'
                f'<text x="{x + 6}" y="{(ROW_Y + BOX_H + EXIT_Y) // 2 + 4}" class="edge">'
                f"{label} (from {escape(where)})</text>"
            )
            continue
        for source in definition.sources(transition):
            if source not in index_of:
                continue
            a, b = index_of[source], index_of[transition.dest]
            if b == a + 1:
                x1, x2, y = x_of[source] + BOX_W, x_of[transition.dest], ROW_Y + BOX_H // 2
                parts.append(
                    f'<path d="M{x1},{y} L{x2 - 2},{y}" stroke="#555" fill="none" '
                    f'marker-end="url(#{marker})"/>'
                    f'<text x="{(x1 + x2) // 2}" y="{y - 6}" text-anchor="middle" class="edge">'
                    f"{label}</text>"
                )
            else:
                # The farther a move jumps, the higher its arch, so arches and labels do not cross.
                x1 = x_of[source] + BOX_W // 2
                x2 = x_of[transition.dest] + BOX_W // 2
                lift = 24 + 22 * abs(a - b)
                top = ROW_Y - lift
                apex = ROW_Y - round(0.75 * lift)
                parts.append(
                    f'<path d="M{x1},{ROW_Y} C{x1},{top} {x2},{top} {x2},{ROW_Y - 2}" '
                    f'stroke="#555" fill="none" marker-end="url(#{marker})"/>'
                    f'<text x="{(x1 + x2) // 2}" y="{apex - 4}" text-anchor="middle" '
                    f'class="edge">{label}</text>'
                )
    if exits:
        left, right = MARGIN, width - MARGIN
        y = ROW_Y + BOX_H + 14
        parts.append(f'<path d="M{left},{y} L{right},{y}" stroke="#bbb" stroke-dasharray="4 3"/>')
    for name in definition.places:
        if name not in x_of:
            continue
        y = EXIT_Y if definition.is_exit(name) else ROW_Y
        kind = (
            "exit"
            if definition.is_exit(name)
            else "intake"
            if definition.is_intake(name)
            else "stage"
        )
        stage = definition.stage(name)
        days = plural(stage.limit_days, "day") if stage else ""
        parts.append(
            f'<g class="{kind}"><rect x="{x_of[name]}" y="{y}" width="{BOX_W}" height="{BOX_H}" '
            'rx="8"/>'
            f'<text x="{x_of[name] + BOX_W // 2}" y="{y + (19 if days else 27)}" '
            f'text-anchor="middle" class="place">{escape(definition.title_of(name))}</text>'
            + (
                f'<text x="{x_of[name] + BOX_W // 2}" y="{y + 35}" text-anchor="middle" '
                f'class="limit">{days}</text>'
                if days
                else ""
            )
            + "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)
