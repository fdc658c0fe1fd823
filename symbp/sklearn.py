"""scikit-learn estimators around a symbp module, in skorch's style and with its parameter names.

``pip install "symbp[sklearn]"``. A ``NeuralNetClassifier`` or ``NeuralNetRegressor`` trains
its module with ``symbp.compile`` and ``CompiledModel.fit``, so it fits in a ``Pipeline``, a
``GridSearchCV`` or ``cross_val_score`` like any scikit-learn estimator::

    from symbp import nn
    from symbp.sklearn import NeuralNetClassifier

    class MLP(nn.Module):
        def __init__(self, n_features_in, n_outputs, hidden=64):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(n_features_in, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs)
            )

        def forward(self, x):
            return self.net(x)

    clf = NeuralNetClassifier(MLP, module__hidden=32, optimizer=symbp.optim.Adam, lr=1e-3,
                              max_epochs=20, batch_size=32, random_state=0)
    GridSearchCV(clf, {"lr": [1e-3, 1e-2]}, cv=3).fit(X, y)

The parameters, as skorch names them: ``module`` (a ``Module`` class, built at each ``fit``
with the ``module__*`` parameters, or an instance, copied at each ``fit`` so that refits start
from the same weights), ``criterion`` (a loss class or instance; ``criterion__*``),
``optimizer`` (a ``symbp.optim`` class, given ``lr`` and ``optimizer__*``), ``lr``,
``max_epochs``, ``batch_size``, ``train_split`` (None: train on everything; a fraction in
(0, 1): held out, the validation loss in ``history_``), ``verbose`` (``fit``'s), and
``random_state`` (the seed of the weights and of the shuffles: the same seed gives the same
model). A module class whose constructor takes ``n_features_in`` or ``n_outputs`` gets them
from the data (the number of classes, or of target columns) unless ``module__*`` sets them.

Unlike skorch, the classifier's default criterion is ``CrossEntropyLoss`` on the module's
logits, and ``predict_proba`` is their softmax. A refit compiles nothing when the shapes,
the model's structure and the optimizer's formulas are the same: ``symbp.compile``'s cache
(in memory within a process, on disk across processes) serves the program; a grid over
``lr`` is one program, as the learning rate is an input of it, not a constant.
"""

from __future__ import annotations

import copy
import inspect
import numbers
import secrets
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        "symbp.sklearn needs scikit-learn: pip install 'symbp[sklearn]' "
        "(or pip install scikit-learn)"
    ) from e

import symbp
from symbp import nn

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]

# the parameter families passed through to what they build, as skorch's double underscore
_PREFIXES = ("module__", "criterion__", "optimizer__")


def _validate(est: Any, X: Any, y: Any = "no_validation", **kwargs: Any) -> Any:
    """scikit-learn's input validation (n_features_in_, feature names), in any version."""
    try:
        from sklearn.utils.validation import validate_data  # scikit-learn >= 1.6
    except ImportError:
        return est._validate_data(X, y, **kwargs)
    return validate_data(est, X, y, **kwargs)


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class _NeuralNet(BaseEstimator):
    """What the classifier and the regressor share: building, training, predicting."""

    _default_criterion: Any = None

    def __init__(
        self,
        module: Any,
        criterion: Any = None,
        optimizer: Any = symbp.optim.SGD,
        lr: float = 0.01,
        max_epochs: int = 10,
        batch_size: int = 128,
        train_split: float | None = None,
        verbose: int = 0,
        random_state: int | np.random.RandomState | None = None,
        **kwargs: Any,
    ) -> None:
        self.module = module
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.train_split = train_split
        self.verbose = verbose
        self.random_state = random_state
        # kept as given; checked by fit, as scikit-learn asks (an __init__ that raises breaks
        # clone and set_params)
        self._extra = sorted(kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)

    # ------------------------------------------------------------ parameters

    def _check_params(self) -> None:
        unknown = [k for k in self._extra if not k.startswith(_PREFIXES)]
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: unknown parameter {unknown[0]!r}; the parameters of "
                f"what it builds are prefixed {', '.join(p + 'NAME' for p in _PREFIXES)}"
            )

    def _prefixed(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._extra if k.startswith(_PREFIXES)}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and every ``module__*``, ``criterion__*``,
        ``optimizer__*`` one (so ``clone`` and ``GridSearchCV`` carry them over)."""
        params = super().get_params(deep=deep)
        params.update({k: getattr(self, k) for k in self._extra})
        return params

    def set_params(self, **params: Any) -> _NeuralNet:
        own = {k: v for k, v in params.items() if not k.startswith(_PREFIXES)}
        for key, value in params.items():
            if key.startswith(_PREFIXES):
                setattr(self, key, value)
                if key not in self._extra:
                    self._extra = sorted([*self._extra, key])
        super().set_params(**own)
        return self

    # a fitted estimator pickles (joblib, GridSearchCV(n_jobs=...), saving a model): the
    # compiled program is a live module, so it is left out and compiled again on loading
    # (from the cache: nothing is generated)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("model_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "module_" in state:
            self.model_ = symbp.compile(self.module_, self.criterion_, self.optimizer_)

    def _kwargs(self, prefix: str) -> dict[str, Any]:
        return {k[len(prefix) :]: v for k, v in self._prefixed().items() if k.startswith(prefix)}

    # ------------------------------------------------------------ building

    def _seed(self) -> int:
        # object: the value as set, checked here (typeshed does not make int a
        # numbers.Integral, so that mypy would take the check below to always fail)
        rs: object = self.random_state
        if rs is None:
            return secrets.randbits(31)
        if isinstance(rs, np.random.RandomState):  # scikit-learn's other spelling
            return int(rs.randint(0, 2**31 - 1))
        if not isinstance(rs, numbers.Integral) or rs < 0:
            raise ValueError(
                f"{type(self).__name__}: random_state must be None or an int >= 0, got {rs!r}"
            )
        return int(rs)

    def _build_module(self, n_features: int, n_outputs: int) -> Any:
        kwargs = self._kwargs("module__")
        if isinstance(self.module, nn.Module):
            if kwargs:
                raise TypeError(
                    f"{type(self).__name__}: module is an instance ({type(self.module).__name__})"
                    f", so module__{next(iter(kwargs))} has nothing to set: pass the class"
                )
            return copy.deepcopy(self.module)  # each fit from the same weights, theirs intact
        if not callable(self.module):
            raise TypeError(
                f"{type(self).__name__}: module must be a symbp Module class or instance, got "
                f"{self.module!r}"
            )
        for name, value in (("n_features_in", n_features), ("n_outputs", n_outputs)):
            if name not in kwargs and _accepts(self.module, name):
                kwargs[name] = value
        return self.module(**kwargs)

    def _build_criterion(self) -> Any:
        crit = self._default_criterion if self.criterion is None else self.criterion
        kwargs = self._kwargs("criterion__")
        if isinstance(crit, type):
            return crit(**kwargs)
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}: criterion is an instance, so criterion__"
                f"{next(iter(kwargs))} has nothing to set: pass the class"
            )
        return crit

    def _initialize(self, n_features: int, n_outputs: int, seed: int) -> None:
        self._check_params()
        symbp.manual_seed(seed)  # the weights of a module class, from the seed
        net = self._build_module(n_features, n_outputs)
        opt = self.optimizer(net.parameters(), lr=self.lr, **self._kwargs("optimizer__"))
        self.module_ = net
        self.criterion_ = self._build_criterion()
        self.optimizer_ = opt
        self.model_ = symbp.compile(net, self.criterion_, opt)
        self.history_: dict[str, list[float]] = {"loss": []}
        self.seed_ = seed

    # ------------------------------------------------------------ training

    def _split(self, X: np.ndarray, y: np.ndarray, seed: int):
        split: object = self.train_split  # as set, checked here (see _seed)
        if split is None:
            return X, y, None
        if not (isinstance(split, numbers.Real) and 0 < float(split) < 1):
            raise ValueError(
                f"{type(self).__name__}: train_split must be None or the held-out fraction in "
                f"(0, 1), got {split!r}"
            )
        order = np.random.default_rng(seed).permutation(len(X))
        n_val = max(1, round(len(X) * float(split)))
        val, train = order[:n_val], order[n_val:]
        return X[train], y[train], (X[val], y[val])

    def _train(self, X: np.ndarray, y: np.ndarray, epochs: int) -> None:
        X, y, validation = self._split(X, y, self.seed_)
        start = len(self.history_["loss"])
        history = self.model_.fit(
            X,
            y,
            epochs=epochs,
            batch_size=min(int(self.batch_size), len(X)),
            seed=self.seed_ + start,  # partial_fit: each call its own shuffles, repeatable
            validation_data=validation,
            verbose=self.verbose,
        )
        for key, values in history.items():
            self.history_.setdefault(key, []).extend(values)

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = _validate(self, X, reset=False, dtype=np.float32, order="C")
        return np.asarray(self.model_.predict(X), np.float64)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    def _more_tags(self) -> dict[str, Any]:  # the same, for scikit-learn < 1.6
        return {"non_deterministic": self.random_state is None}


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    """A classifier: the module maps ``[N, n_features]`` to ``[N, n_classes]`` logits.

    After ``fit``: ``classes_`` (the labels, sorted), ``module_``, ``model_`` (the
    ``CompiledModel``), ``history_`` (``fit``'s per-epoch metrics), ``n_features_in_``.

    >>> import numpy as np, symbp
    >>> from symbp.sklearn import NeuralNetClassifier
    >>> clf = NeuralNetClassifier(lambda n_features_in, n_outputs:
    ...     symbp.nn.Linear(n_features_in, n_outputs), lr=0.5, max_epochs=30, random_state=0)
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 4)
    >>> y = np.array(["no", "no", "no", "yes"] * 4)
    >>> clf.fit(X, y).predict([[1.0, 1.0], [0.0, 0.0]]).tolist()
    ['yes', 'no']
    """

    _default_criterion = nn.CrossEntropyLoss

    def fit(self, X: Any, y: Any) -> NeuralNetClassifier:
        """Build the module (a fresh one each call) and train it for ``max_epochs``."""
        X, y = _validate(self, X, y, dtype=np.float32, order="C")
        check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        self._check_two_classes()
        self._initialize(X.shape[1], len(self.classes_), self._seed())
        self._train(X, labels.astype(np.int64), int(self.max_epochs))
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NeuralNetClassifier:
        """One more epoch on (X, y); the first call builds the module and needs ``classes``
        (every label there will be), as scikit-learn's incremental classifiers do."""
        first = not hasattr(self, "model_")
        X, y = _validate(self, X, y, dtype=np.float32, order="C", reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError(
                    "NeuralNetClassifier.partial_fit: the first call needs classes=[every "
                    "label], so that the module's outputs are fixed"
                )
            self.classes_ = np.unique(classes)
            self._check_two_classes()
            self._initialize(X.shape[1], len(self.classes_), self._seed())
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"NeuralNetClassifier.partial_fit: labels {unknown.tolist()} are not among "
                f"classes_ {self.classes_.tolist()}"
            )
        labels = np.searchsorted(self.classes_, y).astype(np.int64)
        self._train(X, labels, 1)
        return self

    def _check_two_classes(self) -> None:
        if len(self.classes_) < 2:
            raise ValueError(
                f"NeuralNetClassifier: y has only one class ({self.classes_.tolist()}); a "
                f"classifier needs two or more"
            )

    def predict_proba(self, X: Any) -> np.ndarray:
        """The softmax of the module's logits, one column per class of ``classes_``."""
        z = self._outputs(X)
        z = z - z.max(axis=1, keepdims=True)  # exp of logits <= 0: no overflow
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest logit, as labels of ``classes_``."""
        winner = self._outputs(X).argmax(axis=1)  # (first: it checks the estimator is fitted)
        return self.classes_[winner]


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    """A regressor: the module maps ``[N, n_features]`` to ``[N, n_outputs]`` (a 1-D ``y`` is
    one output column, and ``predict`` gives 1-D back); ``MSELoss`` by default."""

    _default_criterion = nn.MSELoss

    def fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        """Build the module (a fresh one each call) and train it for ``max_epochs``."""
        X, y = _validate(self, X, y, dtype=np.float32, order="C", multi_output=True, y_numeric=True)
        Y = self._targets(y)
        self._initialize(X.shape[1], Y.shape[1], self._seed())
        self._train(X, Y, int(self.max_epochs))
        return self

    def partial_fit(self, X: Any, y: Any) -> NeuralNetRegressor:
        """One more epoch on (X, y); the first call builds the module."""
        first = not hasattr(self, "model_")
        X, y = _validate(
            self, X, y, dtype=np.float32, order="C", multi_output=True, y_numeric=True,
            reset=first,
        )  # fmt: skip
        Y = self._targets(y)
        if first:
            self._initialize(X.shape[1], Y.shape[1], self._seed())
        self._train(X, Y, 1)
        return self

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one output column per target column
        return tags

    def _more_tags(self) -> dict[str, Any]:
        return {**super()._more_tags(), "multioutput": True}

    def _targets(self, y: np.ndarray) -> np.ndarray:
        self._y_1d = y.ndim == 1
        return np.ascontiguousarray(y.reshape(len(y), -1), np.float32)

    def predict(self, X: Any) -> np.ndarray:
        out = self._outputs(X)
        return out.ravel() if self._y_1d and out.shape[1] == 1 else out
