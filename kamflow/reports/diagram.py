"""Pictures of a workflow: Mermaid source and a self-drawn SVG.

The SVG needs no script or external asset, so the HTML report works offline.
"""

from __future__ import annotations

from html import escape

from kamflow.definitions.spec import EVERY_STAGE, TransitionSpec
from kamflow.definitions.workflow import Workflow

BOX_W, BOX_H, GAP = 120, 44, 64
ROW_Y, EXIT_Y, MARGIN = 130, 270, 20


#: How the Mermaid diagram styles each kind of place: the colours of the report's own drawing.
MERMAID_STYLES = {
    "intake": "fill:#f4f4f4,stroke:#7f8c8d,stroke-dasharray:4 3,color:#222",
    "stage": "fill:#e8f0f8,stroke:#2e6da4,color:#222",
    "exit": "fill:#fbeeee,stroke:#c0392b,color:#222",
}


def _mermaid_label(text: str) -> str:
    """Text for a quoted Mermaid label: a double quote would end it, so it goes in as an entity."""
    return " ".join(text.replace('"', "#quot;").split())


def mermaid(definition: Workflow) -> str:
    """A Mermaid state diagram of the workflow, with its title as the diagram's front matter.

    The places an account moves on from (the intake places and the stages) sit in one composite
    state, whose start marker points at the stage a new key account starts in. A move that leaves
    from every one of them (``from: "*"`` into an exit) is drawn once, from the composite, instead
    of once per place. Mermaid has no escaping beyond entities, so labels are cleaned here and
    names are the workflow's own (lower-case words, which Mermaid takes as they are).
    """
    import yaml

    spec = definition.spec
    active = spec.active
    inside = set(active)
    group = "active"
    while group in definition.places:  # a place could be called so: the box needs its own id
        group += "_"

    def from_everywhere(transition: TransitionSpec) -> bool:
        """The move leaves from every active place into an exit: one edge from the box."""
        return definition.is_exit(transition.dest) and set(definition.sources(transition)) >= inside

    def label(name: str) -> str:
        stage = definition.stage(name)
        title = definition.title_of(name)
        return _mermaid_label(f"{title} ({stage.limit_text})" if stage else title)

    inner: list[str] = []
    outer: list[str] = []
    for transition in spec.transitions:
        if from_everywhere(transition):
            outer.append(f"{group} --> {transition.dest}: {transition.name}")
            continue
        for source in definition.sources(transition):
            edge = f"{source} --> {transition.dest}: {transition.name}"
            (inner if transition.dest in inside else outer).append(edge)
    boxed = any(edge.startswith(f"{group} ") for edge in outer)
    title = "Key accounts" if not spec.intake else "Candidates and key accounts"

    front = yaml.safe_dump({"title": " ".join(spec.title.split())}, allow_unicode=True, width=1000)
    lines = ["---", front.strip(), "---", "stateDiagram-v2", "  direction LR"]
    lines += [f"  classDef {kind} {style}" for kind, style in MERMAID_STYLES.items()]
    indent = "    " if boxed else "  "
    places = [f'{indent}state "{label(name)}" as {name}' for name in active]
    body = [f"{indent}[*] --> {definition.initial}", *(indent + edge for edge in inner)]
    if boxed:
        lines.append(f'  state "{title}" as {group} {{')
        lines += ["    direction LR", *places, *body, "  }"]
    else:
        lines += [*places, *body]
    lines += [f'  state "{label(name)}" as {name}' for name in definition.exit_names]
    lines += [f"  {edge}" for edge in outer]
    kinds = (
        ("intake", definition.intake_names),
        ("stage", definition.stage_names),
        ("exit", definition.exit_names),
    )
    lines += [f"  class {','.join(names)} {kind}" for kind, names in kinds if names]
    return "\n".join(lines) + "\n"


def svg(definition: Workflow) -> str:
    """The workflow as inline SVG: the cycle left to right, moves back arched above, exits below
    (and any way back from an exit drawn up to its stage)."""
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
            if definition.is_exit(source) and transition.dest in index_of:
                # A way back from an exit (reinstate): from the exit's top up to the stage.
                x1 = x_of[source] + BOX_W // 4
                x2 = x_of[transition.dest] + BOX_W // 4
                # Kept low until it nears the stage, under the labels of the moves to the exits.
                low = EXIT_Y - 5
                parts.append(
                    f'<path d="M{x1},{EXIT_Y} C{x1},{low} {x2},{low} {x2},{ROW_Y + BOX_H + 2}" '
                    f'stroke="#2a7" stroke-dasharray="4 3" fill="none" '
                    f'marker-end="url(#{marker})"/>'
                    f'<text x="{x1 - 4}" y="{EXIT_Y - 12}" text-anchor="end" class="edge">'
                    f"{label}</text>"
                )
                continue
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
        days = stage.limit_text if stage else ""
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
