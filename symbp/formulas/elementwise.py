"""The elementwise families of the tensor language (math, logic) in the formulas.

Their ops are ``ew`` nodes, which print as their SymPy formulas with no row of their own;
what they add here is naming: an ``ew`` node applying one of ``MATH_ACTIVATIONS`` names a
layer output (``_Namer.is_layer``).
"""

# -- issue 12 . math (rows of this family go below this line)
# The math family's activations: an ew node applying one names a layer output (is_layer).
MATH_ACTIVATIONS = {
    "softplus_threshold", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu_tanh", "mish",
    "hardtanh", "hardsigmoid", "hardswish", "softsign", "tanhshrink", "threshold", "logsigmoid",
}  # fmt: skip
#
# -- issue 12 . logic (rows of this family go below this line)
#
