"""MCP server "calculator": arithmetic evaluated safely by walking Python's `ast`, never `eval`.

Run: python -m assistant.tools.calculator

Only numbers, + - * / // % **, unary signs, parentheses and a whitelist of math functions and
constants are accepted. Integer results are capped in size and every power is checked *before*
it is computed, so inputs like 9**9**9 are refused at once instead of hanging the server (a
sync tool runs on a worker thread that cannot be cancelled).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

MAX_LENGTH = 500
MAX_DEPTH = 200
MAX_INT_BITS = 4096  # about 1,200 decimal digits
MAX_FACTORIAL = 450  # 450! is just under MAX_INT_BITS
MAX_ROUND_DIGITS = 100

Number = int | float


class CalcError(Exception):
    pass


def _check(value: object) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        # e.g. (-8) ** 0.5 gives a complex number
        raise CalcError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalcError("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalcError("the result is too large or undefined")
    return value


def _power(base: Number, exp: Number) -> Number:
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1:
        # bits(base**exp) ~ exp * log2|base|: refuse before computing.
        if exp * math.log2(abs(base)) > MAX_INT_BITS:
            raise CalcError("the result is too large")
    return base**exp


def _factorial(n: Number) -> int:
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or n < 0:
        raise CalcError("factorial needs a non-negative whole number")
    if n > MAX_FACTORIAL:
        raise CalcError(f"factorial is limited to n <= {MAX_FACTORIAL}")
    return math.factorial(n)


def _round(x: Number, digits: Number | None = None) -> Number:
    if digits is None:
        return round(x)
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        # round(5, -10**500) would build 10**(10**500) internally
        raise CalcError(f"round's digits must be a whole number within ±{MAX_ROUND_DIGITS}")
    return round(x, digits)


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt, "cbrt": math.cbrt, "exp": math.exp,
    "log": _log, "log10": math.log10, "log2": math.log2, "ln": math.log,
    "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "asin": math.asin, "acos": math.acos, "atan": math.atan, "atan2": math.atan2,
    "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh,
    "degrees": math.degrees, "radians": math.radians, "hypot": math.hypot,
    "abs": abs, "round": _round, "min": min, "max": max,
    "floor": math.floor, "ceil": math.ceil, "factorial": _factorial,
}  # fmt: skip
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _eval(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise CalcError("the expression is nested too deeply")
    depth += 1
    match node:
        case ast.Expression(body=body):
            return _eval(body, depth)
        case ast.Constant(value=value) if isinstance(value, int | float) and not isinstance(
            value, bool
        ):
            return _check(value)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in BINARY:
            return _check(BINARY[type(op)](_eval(left, depth), _eval(right, depth)))
        case ast.UnaryOp(op=op, operand=operand) if type(op) in UNARY:
            return _check(UNARY[type(op)](_eval(operand, depth)))
        case ast.Name(id=name) if name in CONSTANTS:
            return CONSTANTS[name]
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in FUNCTIONS:
            values = [_eval(arg, depth) for arg in args]
            try:
                return _check(FUNCTIONS[name](*values))
            except (ValueError, TypeError) as exc:
                # math domain errors and wrong argument counts, named after the function
                raise CalcError(f"{name}: {exc}") from None
        case ast.Constant():
            raise CalcError("only real numbers are allowed as values")
        case ast.Name(id=name):
            raise CalcError(f"unknown name {name!r}; known: {', '.join([*CONSTANTS, *FUNCTIONS])}")
        case ast.Call():
            raise CalcError("only the listed functions can be called, with positional arguments")
    raise CalcError(f"{type(node).__name__} is not allowed: use numbers, + - * / // % **, "
                    "parentheses and math functions")  # fmt: skip


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; raises CalcError with a one-line reason."""
    text = expression.strip()
    if not text:
        raise CalcError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise CalcError(f"the expression is too long (at most {MAX_LENGTH} characters)")
    # '^' is what people type for powers; Python's XOR isn't offered anyway.
    text = text.replace("^", "**")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalcError(f"cannot parse {expression!r} as arithmetic") from None
    try:
        return _eval(tree)
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except OverflowError:
        raise CalcError("the result is too large") from None
    except RecursionError:
        raise CalcError("the expression is nested too deeply") from None
    except (ValueError, TypeError) as exc:
        raise CalcError(str(exc) or "invalid arithmetic") from None


def format_number(value: Number) -> str:
    if isinstance(value, float):
        # 15 significant digits hides binary noise: 0.1 + 0.2 -> 0.3
        return format(value, ".15g")
    return str(value)


def calculate(
    expression: Annotated[str, Field(description="e.g. '2 * (3 + 4) ** 2' or 'sqrt(2) * pi'")],
) -> str:
    try:
        return format_number(evaluate(expression))
    except CalcError as exc:
        raise ToolError(str(exc)) from None


def build_server() -> MCPServer:
    server = MCPServer(name="calculator")
    server.add_tool(
        calculate,
        description="Evaluate arithmetic: + - * / // % ** (or ^), parentheses, "
        "sqrt, log, log10, exp, sin, cos, tan, abs, round, min, max, factorial, pi, e.",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, open_world_hint=False
        ),
        structured_output=False,
    )
    return server


def main() -> None:
    build_server().run()


if __name__ == "__main__":
    main()
