"""The search flags of compare.py, study.py and tune.py: ``--grid``, ``--search``, ``--trials``,
``--space`` (the logic, and every check, is :func:`jaxopt_cmp.search.swept`'s)."""

from __future__ import annotations


def add_search_args(p, trials: int | None = None, method: str | None = None) -> None:
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="a grid axis: lr=1e-4:1:9log, lr=0.1:0.5:5 or momentum=0.8,0.9,0.99; several make their product "
        "(every optimizer gets it; others at their defaults)",
    )
    p.add_argument(
        "--search",
        choices=("random", "sobol"),
        default=method,
        help="random or quasi-random (scrambled Sobol) search: --trials points of --space, or of each "
        "optimizer's default space (README: Search spaces and tuning budgets)"
        + (" (default: %(default)s)" if method else ""),
    )
    p.add_argument(
        "--trials",
        type=int,
        default=trials,
        help="trials per optimizer with --search, each run on every seed (default: %s)" % (trials or 16),
    )
    p.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=DIST",
        help="a search axis: lr=loguniform(1e-5,1), beta2=1-loguniform(1e-4,1e-1), beta2=uniform(0.9,0.9999) "
        "or warmup=choice(0,100) (default: each optimizer's registry space)",
    )


def searched(args, names, schedule: str, lr_flag: str | None = None, lr_given: bool = False) -> dict | None:
    """Per optimizer, the hyperparameter lists of the search flags, or None when none was given.
    ``lr_flag`` (``lrs``, ``lr``) given too is refused: the grid or space says the lr."""
    from jaxopt_cmp.checks import ConfigError
    from jaxopt_cmp.schedules import check_schedule
    from jaxopt_cmp.search import swept

    if not (args.grid or args.search or args.space or args.trials is not None):
        return None
    check_schedule(schedule, {})  # a bad --schedule named as such, not as the grid's
    if lr_flag and lr_given:
        flag, value = ("grid", " ".join(args.grid)) if args.grid else ("search", args.search or "")
        raise ConfigError(flag, value, f"expected no --{lr_flag} with it (name lr in the grid or space)")
    trials = args.trials if args.trials is not None or not args.search else 16
    return swept(
        names, schedule, grid=args.grid, space=args.space, method=args.search, trials=trials, root_seed=args.seed
    )


def check_grid_memory(args, cfg, max_bytes) -> None:
    """A product grid over the memory budget is refused naming ``--grid``."""
    from jaxopt_cmp.budget import check_budget
    from jaxopt_cmp.checks import ConfigError

    if not (args.grid or args.search):
        return
    try:
        check_budget(cfg, max_bytes)
    except ConfigError as err:
        flag, value = ("grid", " ".join(args.grid)) if args.grid else ("trials", args.trials)
        points = sum(o.grid_size for o in cfg.optimizers)
        raise ConfigError(flag, value, f"{points:,} grid points over the memory budget: {err.allowed}") from None
