"""Limits on what one request may ask for: depth and aliases (tokens are limited at parse time)."""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    visiting: frozenset[str],
) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue  # introspection has its own fixed shape
            deepest = max(deepest, 1 + _depth(selection.selection_set, fragments, visiting))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, visiting))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in visiting:
                deepest = max(deepest, _depth(fragment.selection_set, fragments, visiting | {name}))
    return deepest


def max_depth_rule(limit: int) -> type[ValidationRule]:
    class MaxDepth(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            fragments = {
                d.name.value: d
                for d in self.context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            depth = _depth(node.selection_set, fragments, frozenset())
            if depth > limit:
                self.report_error(
                    GraphQLError(
                        f"The query is {depth} levels deep; at most {limit} are allowed.",
                        node,
                        extensions={"code": "QUERY_TOO_DEEP"},
                    )
                )

    return MaxDepth


def max_aliases_rule(limit: int) -> type[ValidationRule]:
    class MaxAliases(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.count = 0

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            if node.alias is not None:
                self.count += 1
                if self.count == limit + 1:
                    self.report_error(
                        GraphQLError(
                            f"The query uses more than {limit} aliases.",
                            node,
                            extensions={"code": "TOO_MANY_ALIASES"},
                        )
                    )

    return MaxAliases
