"""Every bound archdsl puts on its input, in one place (docs/security.md lists them; a test keeps the two
equal).

Specs are untrusted: they are downloaded and shared, and what archdsl emits from them is run. The
bounds keep ``check`` and ``report`` under a second and a few hundred MB on any input, and every value
inside what the cost model and the lowered module handle exactly. The largest shipped spec has about
200 tokens and 1.4 KB, so the bounds are far above any real architecture.
"""

from __future__ import annotations

#: bytes of one spec file (text or YAML), before anything is parsed
MAX_SOURCE_BYTES = 64 * 1024
#: tokens (names, numbers, operators, brackets) in one composition: the file and all it extends/imports
MAX_TOKENS = 5_000
#: files read in one composition (the spec, what it extends and imports)
MAX_FILES = 16
#: nesting: brackets in the text form, collections in YAML, and operators in one expression
#: (a chain ``a + b + c`` nests one level per operator)
MAX_DEPTH = 100
#: characters in one name (constant, block, sublayer, tensor, model)
MAX_NAME_LENGTH = 64
#: integer values (and integer literals): they fit in a signed 64-bit integer
MAX_INT = 2**63 - 1
#: layers in one model (encoder and decoder together): four times Llama 3 405B's 126; keeps a report
#: of the deepest model under a second
MAX_LAYERS = 512
#: diagnostics collected before archdsl stops looking for more
MAX_DIAGNOSTICS = 100
#: sequence lengths in one ``--seq`` list, and specs in one ``compare``
MAX_LENGTHS = 64
MAX_VARIANTS = 16
#: bytes of a path in ``extends`` / ``import``
MAX_PATH_LENGTH = 1024

ALL = {
    "MAX_SOURCE_BYTES": MAX_SOURCE_BYTES,
    "MAX_TOKENS": MAX_TOKENS,
    "MAX_FILES": MAX_FILES,
    "MAX_DEPTH": MAX_DEPTH,
    "MAX_NAME_LENGTH": MAX_NAME_LENGTH,
    "MAX_INT": MAX_INT,
    "MAX_LAYERS": MAX_LAYERS,
    "MAX_DIAGNOSTICS": MAX_DIAGNOSTICS,
    "MAX_LENGTHS": MAX_LENGTHS,
    "MAX_VARIANTS": MAX_VARIANTS,
    "MAX_PATH_LENGTH": MAX_PATH_LENGTH,
}
