"""What one request may ask for: depth, aliases and cost, from one linear pass before it runs.

`analyse` walks the operation once. Every fragment is analysed once, in
dependency order, and its result reused wherever it is spread, so a
document whose fragments spread each other three times over at every
level costs no more to check than to read. (Tokens are limited at parse
time, by Strawberry's MaxTokensLimiter.)

The checks run in `QueryChecks.on_execute`: after parsing and graphql-core's
validation (both linear, and cached per document), before execution starts.
Cost needs the request's variables (`first: $n`), which is why these are
not validation rules; the analysis is remembered per document and page
sizes (graph/query_shapes.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    ValueNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension

from graph import cost as table
from graph.errors import MASKED_MESSAGE, ClientError
from graph.query_shapes import shape_of
from graph.settings import Settings
from resolvers import clock
from resolvers.throttle import Bucket, ThrottleStatus, spend

log = logging.getLogger("contactgraph")

ITEM_FIELDS = frozenset({"nodes", "edges"})
SIZE_ARGUMENTS = ("first", "last")


@dataclass(frozen=True)
class QueryShape:
    """What `analyse` found: the limits' three measures, and how much walking it took."""

    depth: int
    aliases: int
    cost: int
    # Selection sets walked: linear in the document, whatever it spreads.
    selection_sets_walked: int


@dataclass
class _Part:
    """A selection set's measures.

    On a connection type, `item_cost` is what one item (of `nodes` or
    `edges`) costs; the connection field multiplies it by its page size.
    """

    depth: int = 0
    cost: int = 0
    item_cost: int = 0
    has_items: bool = False

    def add(self, other: _Part) -> None:
        self.depth = max(self.depth, other.depth)
        self.cost += other.cost
        self.item_cost += other.item_cost
        self.has_items = self.has_items or other.has_items


def _is_connection(type_: GraphQLNamedType | None) -> bool:
    return isinstance(type_, GraphQLObjectType) and type_.name.endswith("Connection")


def _is_list(type_: Any) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


class _Walk:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        variable_defaults: Mapping[str, ValueNode],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.variable_defaults = variable_defaults
        self.done: dict[str, _Part] = {}
        self.aliases = 0
        self.walked = 0

    # --- fragments, each once --------------------------------------------

    def analyse_fragments(self, roots: list[str]) -> None:
        """Every fragment reachable from `roots`, dependencies first, without recursion.

        A fragment in a cycle (which validation refuses anyway) sees the one
        still open as empty.
        """
        entered: set[str] = set()
        stack: list[tuple[str, list[str]]] = []
        for root in roots:
            if root in entered or root not in self.fragments:
                continue
            entered.add(root)
            stack.append((root, _spreads(self.fragments[root].selection_set)))
            while stack:
                name, pending = stack[-1]
                while pending and (pending[-1] in entered or pending[-1] not in self.fragments):
                    pending.pop()
                if pending:
                    child = pending.pop()
                    entered.add(child)
                    stack.append((child, _spreads(self.fragments[child].selection_set)))
                    continue
                stack.pop()
                fragment = self.fragments[name]
                parent = self.schema.get_type(fragment.type_condition.name.value)
                self.done[name] = self.selection_set(fragment.selection_set, parent)

    # --- selection sets ----------------------------------------------------

    def selection_set(self, node: SelectionSetNode, parent: GraphQLNamedType | None) -> _Part:
        self.walked += 1
        part = _Part()
        spread: set[str] = set()
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                self.field(selection, parent, part)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                part.add(self.selection_set(selection.selection_set, inner))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                # The executor collects a fragment once per selection set, however often spread.
                if name not in spread:
                    spread.add(name)
                    part.add(self.done.get(name) or _Part())
        return part

    def field(self, node: FieldNode, parent: GraphQLNamedType | None, part: _Part) -> None:
        if node.alias is not None:
            self.aliases += 1
        name = node.name.value
        if name.startswith("__"):
            # Introspection: answered from memory in a fixed shape; only its aliases count.
            if node.selection_set is not None:
                self.selection_set(node.selection_set, None)
            return
        definition = _field(parent, name)
        type_name = parent.name if parent is not None else ""
        declared = table.FIELD_COSTS.get((type_name, name), table.FieldCost())
        named = get_named_type(definition.type) if definition is not None else None
        sub = _Part()
        if node.selection_set is not None:
            sub = self.selection_set(node.selection_set, named)
        points = declared.base + self.argument_points(type_name, node)
        if parent is not None and parent is self.schema.mutation_type:
            points += table.MUTATION + sub.cost
        elif node.selection_set is None:
            points += table.SCALAR
        elif _is_connection(named):
            items = max(sub.item_cost, table.OBJECT) if sub.has_items else 0
            points += table.CONNECTION + self.size(node, definition, declared) * items + sub.cost
        elif definition is not None and any(a in definition.args for a in SIZE_ARGUMENTS):
            # A plain list sized by `first` (notes, duplicate groups).
            points += self.size(node, definition, declared) * (table.OBJECT + sub.cost)
        elif definition is not None and _is_list(definition.type):
            points += declared.items * (table.OBJECT + sub.cost)
        elif name == "node" and type_name.endswith("Edge"):
            points += sub.cost  # the same item as its edge, which is counted already
        else:
            points += table.OBJECT + sub.cost
        part.depth = max(part.depth, 1 + sub.depth)
        if name in ITEM_FIELDS and _is_connection(parent):
            # One item's worth; the connection multiplies it by its page size.
            part.item_cost += points
            part.has_items = True
        else:
            part.cost += points

    # --- arguments ---------------------------------------------------------

    def argument_points(self, type_name: str, node: FieldNode) -> int:
        points = 0
        for argument in node.arguments or ():
            extra = table.ARGUMENT_COSTS.get((type_name, node.name.value, argument.name.value))
            if extra and self.value(argument.value) is not None:
                points += extra
        return points

    def value(self, node: ValueNode) -> Any:
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self.variables:
                return self.variables[name]
            default = self.variable_defaults.get(name)
            return None if default is None else self.value(default)
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, NullValueNode):
            return None
        return node  # present and not null: enough for ARGUMENT_COSTS

    def size(
        self, node: FieldNode, definition: GraphQLField | None, declared: table.FieldCost
    ) -> int:
        """The page size asked for: first/last from literals or variables, else the default."""
        asked = [
            self.value(a.value) for a in node.arguments or () if a.name.value in SIZE_ARGUMENTS
        ]
        sizes = [v for v in asked if isinstance(v, int) and not isinstance(v, bool)]
        if sizes:
            return max(0, min(max(sizes), table.LARGEST_PAGE))
        if asked and any(v is not None for v in asked):
            return table.LARGEST_PAGE  # not a number: the field refuses it; price the worst
        for name in SIZE_ARGUMENTS:
            default = _default(definition, name)
            if isinstance(default, int):
                return max(0, min(default, table.LARGEST_PAGE))
        if declared.default_size is not None:
            return declared.default_size
        return table.LARGEST_PAGE


def _field(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        return parent.fields.get(name)
    return None


def _default(definition: GraphQLField | None, argument: str) -> Any:
    if definition is None or argument not in definition.args:
        return None
    arg = definition.args[argument]
    if arg.default_value is not Undefined:
        return arg.default_value
    literal = arg.ast_node.default_value if arg.ast_node is not None else None
    return int(literal.value) if isinstance(literal, IntValueNode) else None


def _spreads(selection_set: SelectionSetNode) -> list[str]:
    """Names of the fragments a selection set spreads, at any nesting (iteratively)."""
    names: list[str] = []
    stack = [selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                names.append(selection.name.value)
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                stack.append(selection.selection_set)
    return names


def analyse(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None = None,
) -> QueryShape:
    """Depth, aliases and cost of one operation, each fragment analysed once."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    defaults = {
        d.variable.name.value: d.default_value
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }
    walk = _Walk(schema, fragments, variables or {}, defaults)
    walk.analyse_fragments(_spreads(operation.selection_set))
    root = schema.get_root_type(operation.operation)
    part = walk.selection_set(operation.selection_set, root)
    return QueryShape(part.depth, walk.aliases, part.cost, walk.walked)


# --- the refusals --------------------------------------------------------------


def too_deep(depth: int, limit: int) -> ClientError:
    return ClientError(
        f"The query is {depth} levels deep; at most {limit} are allowed.", "QUERY_TOO_DEEP"
    )


def too_many_aliases(limit: int) -> ClientError:
    return ClientError(f"The query uses more than {limit} aliases.", "TOO_MANY_ALIASES")


def _points(n: int) -> str:
    return "1 point" if n == 1 else f"{n} points"


def too_costly(cost: int, limit: int) -> ClientError:
    return ClientError(
        f"The query costs {_points(cost)}; at most {limit} are allowed.",
        "MAX_COST_EXCEEDED",
        cost=cost,
        maximumCost=limit,
    )


def check_limits(shape: QueryShape, settings: Settings) -> ClientError | None:
    if shape.depth > settings.max_depth:
        return too_deep(shape.depth, settings.max_depth)
    if shape.aliases > settings.max_aliases:
        return too_many_aliases(settings.max_aliases)
    # An operation costing more than a whole bucket could never run.
    limit = min(settings.cost_limit, settings.throttle_bucket)
    if shape.cost > limit:
        return too_costly(shape.cost, limit)
    return None


def throttled(status: ThrottleStatus) -> ClientError:
    return ClientError(
        f"Throttled: the query costs {_points(status.cost)} and {math.floor(status.available)} "
        f"are available; {status.bucket.restore_rate:g} come back every second.",
        "THROTTLED",
        retryAfter=status.retry_after,
    )


def _operation_count(document: DocumentNode) -> int:
    return sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)


class QueryChecks(SchemaExtension):
    """Refuses an operation over the limits or its key's budget before it runs; reports the cost.

    Every response carries `extensions.cost` (Shopify's shape). The actual
    cost is the requested one for an operation that ran (the points taken
    from the bucket), 0 for one refused here.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = Bucket(settings.throttle_bucket, settings.throttle_restore)
        self.requested = 0
        self.actual = 0
        self.status: ThrottleStatus | None = None
        self.subscription = False
        self.accepted = False

    async def on_execute(self) -> AsyncIterator[None]:
        refusal = await self.check()
        if refusal is not None:
            if self.subscription:
                raise refusal  # a subscription's source is made whatever `result` says
            self.execution_context.result = GraphQLExecutionResult(data=None, errors=[refusal])
        yield

    async def check(self) -> ClientError | None:
        ctx = self.execution_context
        document = ctx.graphql_document
        operation = get_operation_ast(document, ctx.operation_name) if document else None
        if document is None or operation is None or ctx.result is not None:
            return None  # graphql-core or an earlier check answers it; nothing runs
        if ctx._provided_operation_name is None and _operation_count(document) > 1:
            # Strawberry falls back to the first operation; the GraphQL spec
            # makes this a request error, so a client never runs the wrong one.
            return ClientError(
                "The document holds several operations: name the one to run in operationName.",
                "BAD_REQUEST",
            )
        self.subscription = operation.operation is OperationType.SUBSCRIPTION
        variables = ctx.variables if isinstance(ctx.variables, Mapping) else {}
        shape = shape_of(ctx.schema._schema, document, operation, variables)
        self.requested = shape.cost
        refusal = check_limits(shape, self.settings)
        if refusal is not None:
            return refusal
        try:
            self.status = await self.spend(shape.cost)
        except Exception:  # the budget cannot be read: nothing runs, the client learns nothing
            log.exception("the cost budget of the key could not be spent")
            return ClientError(MASKED_MESSAGE, "INTERNAL_SERVER_ERROR")
        if self.status is not None and not self.status.granted:
            return throttled(self.status)
        self.actual = shape.cost
        self.accepted = True
        return None

    async def spend(self, cost: int) -> ThrottleStatus | None:
        context = self.execution_context.context
        key = getattr(context, "key", None)
        if key is None or not getattr(context, "throttled", True):
            return None
        return await spend(context.database, key.id, key.shop_id, cost, self.bucket, clock.now())

    async def get_results(self) -> dict[str, Any]:
        if self.subscription and self.accepted:
            return {}  # accepted: its cost was taken once, at subscribe; events do not repeat it
        if self.status is None:
            # Refused before execution (syntax, validation, limits): nothing is
            # spent, but the client still learns where its budget stands.
            try:
                self.status = await self.spend(0)
            except Exception:  # the answer stands without the budget
                log.warning("the cost budget of the key could not be read", exc_info=True)
        cost: dict[str, Any] = {
            "requestedQueryCost": self.requested,
            "actualQueryCost": self.actual,
        }
        if self.status is not None:
            cost["throttleStatus"] = self.status.as_extension()
        return {"cost": cost}
