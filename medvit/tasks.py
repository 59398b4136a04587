"""medmnist's task strings, named once for the data, loss and metric modules."""

MULTI_CLASS = "multi-class"
BINARY = "binary-class"
MULTI_LABEL = "multi-label, binary-class"
ORDINAL = "ordinal-regression"
TASKS: tuple[str, ...] = (MULTI_CLASS, BINARY, MULTI_LABEL, ORDINAL)
