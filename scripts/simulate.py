#!/usr/bin/env python3
"""A day of an ECS GPU service scaled the way deploy/ scales it, minute by minute.

Three layers, each modelled as AWS documents it (docs/scaling.md):
  load  -> tasks:     Application Auto Scaling target tracking on the mean of
                      ServiceGPUUtilization (one datum per task per minute): scale out after 3
                      datapoints above target, desired = ceil(capacity x metric / target); scale
                      in after 15 datapoints below 90% of target; cooldowns.
  tasks -> instances: the capacity provider's managed scaling: CapacityProviderReservation =
                      M / N x 100 every minute (M instances needed, PROVISIONING tasks included;
                      N instances in the group); scale out at once, in after 15 minutes below
                      target, and only instances running no task (managed termination protection).
  instances:          g4dn.xlarge, 1 GPU each, at most sharing.max_per_gpu tasks per GPU
                      (gpu-share's admission limit, mirrored by the tasks' CPU reservation so ECS
                      places no more); a task that fits nowhere stays PROVISIONING.

A task's GPU use is its share of the load (load / running tasks), capped by its GPU: the tasks
on one GPU share its 100%. Deterministic: no randomness.

Pure standard library; matplotlib only draws the PNG (--plot). --json prints the summary as
JSON for tests.
"""

import argparse
import json
import math
import sys
from dataclasses import dataclass, field

MINUTES = 24 * 60
# Minute at which each phase of the day starts; the load curve below follows them.
PHASES = [
    ("night", 0),
    ("morning ramp", 6 * 60),
    ("day", 9 * 60),
    ("peak", 12 * 60),
    ("spike", 15 * 60),
    ("afternoon", 15 * 60 + 20),
    ("evening ramp", 18 * 60),
    ("late trough", 22 * 60),
]


def load_at(minute):
    """The service's demand in percent of one GPU (100 = one GPU's SMs fully busy)."""
    h = minute / 60
    trough, day, peak, spike = 40.0, 400.0, 600.0, 900.0
    # A gentle 40-minute wave on the plateaus, so the stack is shown noise, not a flat line.
    wave = 1 + 0.05 * math.sin(2 * math.pi * minute / 40)
    if h < 6:
        return trough
    if h < 9:
        return trough + (day - trough) * (h - 6) / 3
    if h < 12:
        return day * wave
    if h < 15:
        return peak * wave
    if h < 15 + 20 / 60:
        return spike
    if h < 18:
        return day * wave
    if h < 22:
        return day + (trough - day) * (h - 18) / 4
    return trough


@dataclass
class Config:
    target: float = 20.0  # TargetGpuUtilization: mean percent of one GPU per task
    max_per_gpu: int = 4  # sharing.max_per_gpu
    gpus_per_instance: int = 1  # g4dn.xlarge
    min_tasks: int = 1
    max_tasks: int = 80
    # Minutes (ScaleOutCooldown 420 s): an instance's start, a task's start and a datapoint.
    scale_out_cooldown: int = 7
    scale_in_cooldown: int = 5  # minutes (ScaleInCooldown 300 s)
    out_datapoints: int = 3
    in_datapoints: int = 15
    in_safety: float = 0.9  # the scale-in alarm's threshold, as a fraction of target
    task_start: int = 1  # minutes from placed to serving
    target_capacity: float = 100.0  # the capacity provider's TargetCapacity
    min_step: int = 1
    max_step: int = 4
    instance_start: int = 5  # minutes from launch to registered in the cluster
    cp_in_datapoints: int = 15
    min_instances: int = 0
    max_instances: int = 30


@dataclass
class Task:
    placed_at: int = -1  # minute placed on an instance; -1 while PROVISIONING
    instance: int = -1
    created_at: int = 0


@dataclass
class Instance:
    ident: int
    ready_at: int  # minute it joins the cluster


@dataclass
class Stack:
    cfg: Config
    desired: int = 1
    tasks: list = field(default_factory=list)
    instances: list = field(default_factory=list)
    next_instance: int = 0
    metric_history: list = field(default_factory=list)
    cpr_history: list = field(default_factory=list)
    last_out: int = -10**6
    last_in: int = -10**6
    out_base: int = 0  # capacity a scale-out during its cooldown is computed from

    def slots(self):
        return self.cfg.max_per_gpu * self.cfg.gpus_per_instance

    def ready(self, now):
        return [i for i in self.instances if i.ready_at <= now]

    def on(self, inst):
        return [t for t in self.tasks if t.instance == inst.ident]

    def running(self, now):
        start = self.cfg.task_start
        return [t for t in self.tasks if t.placed_at >= 0 and now - t.placed_at >= start]

    def provisioning(self):
        return [t for t in self.tasks if t.placed_at < 0]

    # --- ECS service scheduler -------------------------------------------------------------
    def schedule(self, now):
        while len(self.tasks) < self.desired:
            self.tasks.append(Task(created_at=now))
        while len(self.tasks) > self.desired:
            self.tasks.remove(self.victim())
        for t in self.provisioning():
            # binpack: the fullest ready instance that still has a slot.
            fits = [i for i in self.ready(now) if len(self.on(i)) < self.slots()]
            if not fits:
                break
            best = max(fits, key=lambda i: (len(self.on(i)), -i.ident))
            t.placed_at, t.instance = now, best.ident

    def victim(self):
        waiting = self.provisioning()
        if waiting:
            return waiting[-1]
        # Stop on the emptiest instance, so whole instances empty and can be scaled in.
        count = {}
        for t in self.tasks:
            count[t.instance] = count.get(t.instance, 0) + 1
        return min(self.tasks, key=lambda t: (count[t.instance], -t.instance))

    # --- what the GPUs do -----------------------------------------------------------------
    def serve(self, now, load):
        """Each running task's GPU use: its share of the load, within its GPU's 100%."""
        running = self.running(now)
        use = {}
        if not running:
            return use, 0.0
        demand = load / len(running)
        for inst in self.ready(now):
            here = [t for t in running if t.instance == inst.ident]
            if here:
                share = min(demand, 100.0 * self.cfg.gpus_per_instance / len(here))
                for t in here:
                    use[id(t)] = min(share, 100.0 * self.cfg.gpus_per_instance)
        return use, sum(use.values())

    # --- Application Auto Scaling target tracking on ServiceGPUUtilization ---------------
    def scale_service(self, now, metric):
        c = self.cfg
        self.metric_history.append(metric)
        recent = [m for m in self.metric_history[-c.out_datapoints:] if m is not None]
        if len(recent) == c.out_datapoints and all(m > c.target for m in recent):
            in_cooldown = now - self.last_out < c.scale_out_cooldown
            base = self.out_base if in_cooldown else self.desired
            want = min(c.max_tasks, math.ceil(base * metric / c.target))
            if want > self.desired:
                if not in_cooldown:
                    self.out_base = self.desired
                self.desired, self.last_out = want, now
                return
        recent = [m for m in self.metric_history[-c.in_datapoints:] if m is not None]
        low = c.target * c.in_safety
        if (
            len(recent) == c.in_datapoints
            and all(m < low for m in recent)
            and now - self.last_in >= c.scale_in_cooldown
            and now - self.last_out >= c.scale_in_cooldown
        ):
            want = max(c.min_tasks, math.ceil(self.desired * metric / c.target))
            if want < self.desired:
                self.desired, self.last_in = want, now

    # --- the capacity provider's managed scaling ------------------------------------------
    def scale_instances(self, now):
        c = self.cfg
        busy = len({t.instance for t in self.tasks if t.instance >= 0})
        waiting = len(self.provisioning())
        m = busy + math.ceil(waiting / self.slots())
        n = len(self.instances)
        cpr = (200.0 if m > 0 else 100.0) if n == 0 else 100.0 * m / n
        self.cpr_history.append(cpr)
        want = math.ceil(m * 100.0 / c.target_capacity)
        if cpr > c.target_capacity and want > n:
            add = max(c.min_step, min(c.max_step, want - n))
            add = min(add, c.max_instances - n)
            for _ in range(add):
                self.instances.append(Instance(self.next_instance, now + c.instance_start))
                self.next_instance += 1
            return
        recent = self.cpr_history[-c.cp_in_datapoints:]
        if len(recent) == c.cp_in_datapoints and all(r < c.target_capacity for r in recent):
            # Managed termination protection: only instances running no task may go.
            idle = [i for i in self.ready(now) if not self.on(i)]
            for inst in idle[: max(0, n - max(want, c.min_instances))]:
                self.instances.remove(inst)


def simulate(cfg):
    """One day; returns the minute-by-minute timeline."""
    stack = Stack(cfg, desired=cfg.min_tasks)
    rows = []
    for now in range(MINUTES):
        load = load_at(now)
        stack.schedule(now)
        use, served = stack.serve(now, load)
        running = stack.running(now)
        metric = sum(use.values()) / len(use) if use else None
        ready = stack.ready(now)
        per_gpu = max((len(stack.on(i)) for i in ready), default=0) / cfg.gpus_per_instance
        gpus = len(ready) * cfg.gpus_per_instance
        waited = max((now - t.created_at for t in stack.provisioning()), default=0)
        rows.append(
            {
                "minute": now,
                "load": load,
                "desired": stack.desired,
                "running": len(running),
                "provisioning": len(stack.provisioning()),
                "instances": len(stack.instances),
                "ready_instances": len(ready),
                "metric": metric,
                "gpu_use": served / gpus if gpus else 0.0,  # percent
                "served": min(1.0, served / load) if load else 1.0,
                "max_tasks_per_gpu": per_gpu,
                "oldest_provisioning": waited,
            }
        )
        stack.scale_service(now, metric)
        stack.scale_instances(now)
    return rows


def reversals(series):
    """How often the series turns from rising to falling or back."""
    turns, direction = 0, 0
    for a, b in zip(series, series[1:]):
        step = (b > a) - (b < a)
        if step and direction and step != direction:
            turns += 1
        direction = step or direction
    return turns


def summarize(cfg, rows):
    bounds = [start for _, start in PHASES] + [MINUTES]
    phases = []
    for (name, start), end in zip(PHASES, bounds[1:]):
        part = rows[start:end]
        mean = lambda key: sum(r[key] for r in part) / len(part)  # noqa: E731
        metrics = [r["metric"] for r in part if r["metric"] is not None]
        phases.append(
            {
                "phase": name,
                "start": f"{start // 60:02d}:{start % 60:02d}",
                "load": round(mean("load"), 1),
                "tasks": round(mean("running"), 1),
                "tasks_max": max(r["running"] for r in part),
                "instances": round(mean("instances"), 1),
                "task_gpu_use": round(sum(metrics) / len(metrics), 1) if metrics else None,
                "gpu_use": round(mean("gpu_use"), 1),
                "served": round(100 * mean("served"), 1),
            }
        )
    # Settled: the desired count has not moved for 30 minutes and nothing waits for an instance.
    settled_excess = []
    for i, r in enumerate(rows):
        window = rows[max(0, i - 30): i + 1]
        if i >= 30 and len({w["desired"] for w in window}) == 1 and not r["provisioning"]:
            need = math.ceil(r["running"] / (cfg.max_per_gpu * cfg.gpus_per_instance))
            settled_excess.append(r["ready_instances"] - need)
    by_phase = {p["phase"]: p for p in phases}
    served = sum(r["load"] * r["served"] for r in rows)
    ceiling = 100.0 * cfg.gpus_per_instance / (cfg.max_per_gpu * cfg.gpus_per_instance)
    warning = None
    if cfg.target > ceiling:
        warning = (
            f"target {cfg.target:g} is above 100 / max_per_gpu = {ceiling:g}: a GPU full of tasks "
            "reads below target while it is saturated, so the service does not scale out under load"
        )
    return {
        "target": cfg.target,
        "max_per_gpu": cfg.max_per_gpu,
        "ceiling": ceiling,
        "warning": warning,
        "phases": phases,
        "desired_reversals": reversals([r["desired"] for r in rows]),
        "instance_reversals": reversals([r["instances"] for r in rows]),
        "peak_tasks": by_phase["peak"]["tasks_max"],
        "trough_tasks": by_phase["night"]["tasks_max"],
        "peak_instances": max(r["instances"] for r in rows[12 * 60: 15 * 60]),
        "max_tasks_per_gpu": max(r["max_tasks_per_gpu"] for r in rows),
        "longest_provisioning_minutes": max(r["oldest_provisioning"] for r in rows),
        "settled_minutes": len(settled_excess),
        "settled_instances_short": sum(1 for e in settled_excess if e < 0),
        "settled_instances_spare_max": max(settled_excess, default=0),
        "served_percent": round(100 * served / sum(r["load"] for r in rows), 1),
    }


def print_summary(s):
    ceiling = f"ceiling on a full GPU: 100 / max_per_gpu = {s['ceiling']:g}%"
    print(f"target {s['target']:g}% per task ({ceiling})")
    if s["warning"]:
        print(f"  WARNING: {s['warning']}")
    print(
        f"  {'phase':<13} {'start':>5} {'load':>6} {'tasks':>6} {'max':>4} {'inst':>5} "
        f"{'task%':>6} {'gpu%':>5} {'served%':>8}"
    )
    for p in s["phases"]:
        use = "-" if p["task_gpu_use"] is None else f"{p['task_gpu_use']:.1f}"
        print(
            f"  {p['phase']:<13} {p['start']:>5} {p['load']:>6.0f} {p['tasks']:>6.1f} "
            f"{p['tasks_max']:>4} "
            f"{p['instances']:>5.1f} {use:>6} {p['gpu_use']:>5.1f} {p['served']:>8.1f}"
        )
    print(
        f"  reversals of desired tasks: {s['desired_reversals']}, "
        f"of instances: {s['instance_reversals']}; "
        f"peak {s['peak_tasks']} tasks on {s['peak_instances']} instances; "
        f"at most {s['max_tasks_per_gpu']:g} tasks per GPU; "
        f"longest PROVISIONING {s['longest_provisioning_minutes']} min; "
        f"load served {s['served_percent']}%"
    )


def plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 4.2 * len(runs)), sharex=True)
    axes = axes if len(runs) > 1 else [axes]
    for ax, (cfg, rows) in zip(axes, runs):
        hours = [r["minute"] / 60 for r in rows]
        ax.plot(hours, [r["running"] for r in rows], label="running tasks", color="tab:blue")
        ax.plot(hours, [r["desired"] for r in rows], label="desired tasks", color="tab:blue",
                ls=":", lw=1)
        ax.step(hours, [r["instances"] for r in rows], where="post", label="instances (GPUs)",
                color="tab:orange")
        ax.plot(hours, [r["load"] / 100 for r in rows], label="load (GPUs of work)",
                color="black", lw=1)
        ax.set_ylabel("tasks / instances / GPUs of load")
        ax.set_title(
            f"TargetGpuUtilization {cfg.target:g}% per task, "
            f"sharing.max_per_gpu = {cfg.max_per_gpu}"
        )
        right = ax.twinx()
        right.plot(hours, [r["gpu_use"] for r in rows], label="mean GPU use % (right)",
                   color="tab:green", lw=0.8, alpha=0.7)
        right.plot(hours, [r["metric"] or 0 for r in rows],
                   label="ServiceGPUUtilization avg % (right)", color="tab:red", lw=0.8)
        right.axhline(cfg.target, color="tab:red", ls="--", lw=0.8)
        right.set_ylim(0, 110)
        right.set_ylabel("percent")
        lines = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    axes[-1].set_xlabel("hour of the day")
    axes[-1].set_xticks(range(0, 25, 2))
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=float, nargs="+", default=[20.0, 15.0],
                    help="TargetGpuUtilization values, one run each")
    ap.add_argument("--max-per-gpu", type=int, default=4, help="sharing.max_per_gpu")
    ap.add_argument("--instance-start", type=int, default=5,
                    help="minutes from launch to joining the cluster")
    ap.add_argument("--scale-out-cooldown", type=int, default=7, help="ScaleOutCooldown in minutes")
    ap.add_argument("--target-capacity", type=float, default=100.0,
                    help="the capacity provider's TargetCapacity")
    ap.add_argument("--plot", metavar="PNG", help="draw the runs to this PNG (needs matplotlib)")
    ap.add_argument("--json", action="store_true", help="print the summaries as JSON")
    args = ap.parse_args(argv)
    if args.max_per_gpu < 1:
        ap.error(f"--max-per-gpu {args.max_per_gpu}: must be at least 1")
    if any(t <= 0 for t in args.targets):
        ap.error("--targets: every target must be above 0")
    if not 0 < args.target_capacity <= 100:
        ap.error(f"--target-capacity {args.target_capacity:g}: must be in (0, 100]")
    if args.scale_out_cooldown < 0 or args.instance_start < 0:
        ap.error("--scale-out-cooldown and --instance-start must not be negative")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("simulate: --plot needs matplotlib (scripts/install-deps.sh installs it)",
                  file=sys.stderr)
            return 1
    runs, summaries = [], []
    for target in args.targets:
        cfg = Config(
            target=target,
            max_per_gpu=args.max_per_gpu,
            instance_start=args.instance_start,
            target_capacity=args.target_capacity,
            scale_out_cooldown=args.scale_out_cooldown,
        )
        rows = simulate(cfg)
        runs.append((cfg, rows))
        summaries.append(summarize(cfg, rows))
    if args.json:
        json.dump(summaries, sys.stdout, indent=1)
        print()
    else:
        for s in summaries:
            print_summary(s)
    if args.plot:
        try:
            plot(runs, args.plot)
        except OSError as e:
            print(f"simulate: writing {args.plot}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
