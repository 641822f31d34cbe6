"""The SLURM executor, through submitit: trials as one job array, requeued on
preemption and at the time limit, each resuming from its own checkpoints.

A job runs `TrialJob`, which starts the trial's driver as a child process and waits.
Preemption reaches the driver one of two ways, and both end in a requeue:

- SLURM sends SIGTERM to every process of a preempted job: the driver saves a
  checkpoint after the step in flight and exits 75 (EXIT_PREEMPTED); submitit's own
  handler ignores SIGTERM in the job, so TrialJob sees the 75 and sends itself
  submitit's requeue signal.
- Ahead of the time limit submitit has SLURM send its requeue signal (SIGUSR2,
  `signal_delay_s` before the end): submitit calls `TrialJob.checkpoint`, which
  SIGTERMs the driver, waits for its checkpoint and exit, and hands back a fresh
  TrialJob for the requeued job.

A trial of several tasks (`nodes` x `tasks_per_node`, one per GPU) is one job whose
tasks each run TrialJob: every task starts the driver, and the drivers join one
multi-process run from SLURM's variables (`training.join_cluster`). Task 0 alone keeps
the trial's records (status.json, the driver's stdout.log and stderr.log, the data
preparation turn, the requeue); task N > 0 writes its driver's output to
tasks/N/stdout.log and stderr.log in the trial folder. Preemption stops task 0's
driver as above; the engine's multi-process preemption (JAX's sync point,
`seqmodels.training.loop`) has every driver save the same step and exit.

With cluster='local' the same code runs under submitit's LocalExecutor (a process per
job on this machine, requeued in place): the tests use it, since CI has no SLURM.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import time
import types
from collections.abc import Callable, Mapping, Sequence

from seqmodels.sweep import records, runner
from seqmodels.sweep.declare import SweepError
from seqmodels.sweep.local import data_prepared

_POLL_S = 0.5
_STOP_GRACE_S = 120.0  # how long a preempted driver gets to save its checkpoint
_ALIVE_STATES = {
    'PENDING',
    'RUNNING',
    'REQUEUED',
    'REQUEUE_HOLD',
    'REQUEUE_FED',
    'CONFIGURING',
    'COMPLETING',
    'RESIZING',
    'SUSPENDED',
    'STAGE_OUT',
    'SIGNALING',
    'PREEMPTED',
}


def _requeue_signal() -> int:
    # The signal submitit's job handler treats as "checkpoint and requeue".
    return getattr(signal, 'SIG' + os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2'))


class TrialJob:
    """What each task of a trial's job runs: the trial's driver, until it ends or is
    preempted."""

    def __init__(
        self, directory: str, command: list[str], cwd: str, sweep_dir: str, executor: str = 'slurm'
    ):
        self.directory, self.command, self.cwd, self.sweep_dir = (
            directory,
            command,
            cwd,
            sweep_dir,
        )
        self.executor = executor
        self._process = None
        self._returncode = None
        self._since = 0
        self._preempting = False
        self._recorded = None

    def __getstate__(self):  # a running process does not travel in a pickle
        return {
            k: self.__dict__[k] for k in ('directory', 'command', 'cwd', 'sweep_dir', 'executor')
        }

    def __setstate__(self, state):
        self.__init__(**state)

    def __call__(self) -> dict:
        rank = _task_rank()
        if rank:
            return self._run_follower(rank)
        trial = records.Trial.load(self.directory)
        cores = sorted(os.sched_getaffinity(0))  # what SLURM gave this job
        env = runner.trial_env(cores, {})
        lock = self._gate()
        process, self._since = runner.start(trial, self.command, env, self.cwd)
        self._process = process
        runner.record_start(
            trial,
            process.pid,
            executor=self.executor,
            cores=cores,
            job_id=_job_id(),
            job_pid=os.getpid(),
            devices=os.environ.get('CUDA_VISIBLE_DEVICES'),
        )
        while self._reap() is None:
            if lock is not None and os.path.exists(os.path.join(self.directory, 'config.json')):
                lock.close()  # our data is prepared: the other trials may start theirs
                lock = None
            time.sleep(_POLL_S)
        if lock is not None:
            lock.close()
        status = self._record_end()
        if status['status'] == records.PREEMPTED and not self._preempting:
            # SLURM's SIGTERM reached the driver first: have submitit requeue the job.
            os.kill(os.getpid(), _requeue_signal())
            time.sleep(60)  # submitit's handler exits this process
        return status

    def _run_follower(self, rank: int) -> dict:
        """Task `rank` > 0 of a multi-task trial: its driver process of the run, once
        task 0 has started its own; records nothing (task 0 does). submitit calls
        `checkpoint` on task 0 only, whose driver's stop reaches this one through JAX."""
        if not self._wait_for_first_task():
            return {'task': rank, 'status': 'not started: task 0 ended this job'}
        # runner.start writes stdout.log and stderr.log into the `directory` it is given.
        logs = types.SimpleNamespace(directory=os.path.join(self.directory, 'tasks', str(rank)))
        env = runner.trial_env(sorted(os.sched_getaffinity(0)), {})
        self._process, _ = runner.start(logs, self.command, env, self.cwd)
        while self._reap() is None:
            time.sleep(_POLL_S)
        return {'task': rank, 'exit_code': self._returncode}

    def _wait_for_first_task(self) -> bool:
        """Waits until task 0 of this job has started its driver (True) or has ended the
        trial (False). Until some trial has prepared its data, task 0 may wait for its
        turn (`_gate`), and a driver started before it would wait in
        jax.distributed.initialize, which gives up after a few minutes."""
        trial = records.Trial.load(self.directory)
        job = _job_id()
        while True:
            status = trial.status()
            if status.get('job_id') == job:
                if status.get('status') == records.RUNNING:
                    return True
                # An attempt of this job that ended for good (a preempted one is the
                # previous attempt of a requeued job).
                if status.get('status') in (records.DONE, records.DIVERGED, records.ERROR):
                    return False
            if data_prepared(records.load_trials(self.sweep_dir)):
                return True  # task 0 does not wait for a turn
            time.sleep(_POLL_S)

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on its requeue signal: stop the driver (which saves a
        checkpoint) and resubmit a fresh copy of this job; None (no requeue) when the
        trial has ended anyway."""
        import submitit

        self._preempting = True
        if self._process is not None and self._reap() is None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.time() + _STOP_GRACE_S
            while self._reap() is None and time.time() < deadline:
                time.sleep(0.1)
        if self._process is not None:
            status = self._record_end()
            if status['status'] != records.PREEMPTED:
                return None
        return submitit.helpers.DelayedSubmission(TrialJob(**self.__getstate__()))

    def _record_end(self) -> dict:
        """The attempt's outcome, recorded once (the end of __call__ and a requeue
        signal may both get here)."""
        trial = records.Trial.load(self.directory)
        if self._recorded is not None:
            return self._recorded
        if self._reap() is None:  # still running after the grace period
            os.killpg(self._process.pid, signal.SIGKILL)
            while self._reap() is None:
                time.sleep(0.05)
        result = runner.outcome(
            self._returncode, os.path.join(self.directory, records.STDERR_FILE), self._since
        )
        if self._preempting and result['status'] == records.ERROR:
            result.update(status=records.PREEMPTED, error=None)  # stopped by us: resumable
        self._recorded = runner.record_end(trial, result)
        return self._recorded

    def _reap(self) -> int | None:
        """The driver's exit status once it has exited. os.waitpid, not Popen.wait:
        this also runs inside a signal handler that may interrupt a wait."""
        if self._returncode is None:
            try:
                pid, status = os.waitpid(self._process.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self._process.pid, 0
            if pid:
                self._returncode = os.waitstatus_to_exitcode(status)
                self._process.returncode = self._returncode
        return self._returncode

    def _gate(self):
        """Until some trial has prepared its data, trials take turns preparing theirs
        (two writing one dataset at once would race). Returns the held lock or None."""
        trials = records.load_trials(self.sweep_dir)
        if data_prepared(trials):
            return None
        lock = open(os.path.join(self.sweep_dir, '.prepare.lock'), 'w')
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: go ahead
            lock.close()
            return None
        if data_prepared(records.load_trials(self.sweep_dir)):
            lock.close()
            return None
        return lock


def _task_rank() -> int:
    """This task's index among its job's tasks (0 in a job of one task): submitit's
    global rank (SLURM_PROCID under SLURM), or SLURM_PROCID outside a submitit job."""
    try:
        import submitit

        return submitit.JobEnvironment().global_rank
    except (ImportError, RuntimeError):  # RuntimeError: not in a submitit job
        return int(os.environ.get('SLURM_PROCID') or 0)


def _job_id() -> str | None:
    array, task = os.environ.get('SLURM_ARRAY_JOB_ID'), os.environ.get('SLURM_ARRAY_TASK_ID')
    if array and task:
        return f'{array}_{task}'
    return os.environ.get('SLURM_JOB_ID') or os.environ.get('SUBMITIT_LOCAL_JOB_ID')


def job_parameters(
    name: str,
    *,
    time_min: int,
    parallel: int,
    signal_delay_s: int,
    partition: str | None = None,
    nodes: int = 1,
    tasks_per_node: int = 1,
    gpus_per_node: int = 0,
    cpus_per_task: int = 0,
    extra_args: Sequence[str] = (),
) -> dict:
    """submitit's parameters for one trial per array task, the trial a job of `nodes` x
    `tasks_per_node` tasks; `extra_args` are more sbatch options as 'key=value' strings.

    Raises SweepError naming the flag for a malformed option, a count below 1, or a run
    of several tasks with other than one GPU per task: each process of a multi-process
    run uses the one GPU at its SLURM_LOCALID (jax.distributed's SLURM detection).
    """
    for flag, value in (('nodes_per_trial', nodes), ('tasks_per_node', tasks_per_node)):
        if value < 1:
            raise SweepError(f'--slurm_{flag} must be >= 1, got {value}')
    if nodes * tasks_per_node > 1 and gpus_per_node and gpus_per_node != tasks_per_node:
        raise SweepError(
            f'--slurm_gpus_per_trial={gpus_per_node} with --slurm_tasks_per_node='
            f'{tasks_per_node}: a run of several tasks gives each task one GPU, so set '
            f'--slurm_tasks_per_node={gpus_per_node}'
        )
    params = {
        'name': f'sweep_{name}',
        'timeout_min': time_min,
        'nodes': nodes,
        'tasks_per_node': tasks_per_node,
        'slurm_array_parallelism': parallel,
        'slurm_signal_delay_s': signal_delay_s,
    }
    if partition:
        params['slurm_partition'] = partition
    if gpus_per_node:
        params['gpus_per_node'] = gpus_per_node
    if cpus_per_task:
        params['cpus_per_task'] = cpus_per_task
    extra = {}
    for item in extra_args:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise SweepError(f'--slurm_args: {item!r} is not key=value')
        extra[key] = value
    if extra:
        params['slurm_additional_parameters'] = extra
    return params


class SubmititExecutor:
    """Submits the plan's trials through submitit and waits for them.

    A grid or random search goes out as one job array (at most `parallel` tasks run at
    once); a Bayesian search submits trials as Optuna proposes them, `parallel` at a
    time. The launcher may be stopped and rerun at any time: a rerun finds the jobs
    still queued or running (their ids are in each trial's status.json) and waits for
    them instead of submitting them again.
    """

    def __init__(
        self,
        cluster: str = 'slurm',
        parallel: int = 1,
        parameters: Mapping | None = None,
        log: Callable = print,
    ):
        self.cluster, self.parallel, self.log = cluster, parallel, log
        self.name = 'slurm' if cluster == 'slurm' else f'submitit_{cluster}'
        self.parameters = dict(parameters or {})
        self.stopped_by: int | None = None
        tasks = self.parameters.get('nodes', 1) * self.parameters.get('tasks_per_node', 1)
        if cluster != 'slurm' and tasks > 1:
            # Its tasks get no SLURM variables: each driver would train alone.
            raise SweepError(
                f'--executor={self.name} runs one task per trial; a trial of {tasks} '
                'tasks needs --executor=slurm'
            )

    def _executor(self, workdir: str):
        try:
            import submitit
        except ImportError:
            raise SweepError(
                'the SLURM executor needs submitit: pip install -e ".[cluster]"'
            ) from None
        if self.cluster == 'slurm' and shutil.which('sbatch') is None:
            raise SweepError(
                '--executor=slurm: sbatch is not on PATH; launch from a SLURM '
                'login node (--executor=submitit_local runs the same path here)'
            )
        executor = submitit.AutoExecutor(
            folder=os.path.join(workdir, 'slurm', '%j'),
            cluster=self.cluster,
            slurm_max_num_timeout=20,
        )
        executor.update_parameters(**self.parameters)
        return executor

    def _job(self, workdir: str, job_id: str):
        import submitit

        if self.cluster != 'slurm':
            return None  # a local job cannot be found again from another process
        return submitit.SlurmJob(folder=os.path.join(workdir, 'slurm', '%j'), job_id=job_id)

    def run(self, sweep, plan, monitor) -> None:
        executor = self._executor(sweep.workdir)
        adaptive = getattr(plan, 'adaptive', False)
        capacity = self.parallel if adaptive or self.cluster != 'slurm' else 10**9
        active: dict[int, tuple[records.Trial, object]] = {}
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.stopped_by is None:
                batch = []
                while len(active) + len(batch) < capacity:
                    trial = plan.next_trial()
                    if trial is None:
                        break
                    job = self._live_job(sweep.workdir, trial)
                    if job is not None:
                        self.log(
                            f'{trial.name}: job {job.job_id} is still queued or running;'
                            ' waiting for it'
                        )
                        active[trial.index] = (trial, job)
                    else:
                        batch.append(trial)
                if batch:
                    self._submit(executor, sweep, batch, active, monitor)
                for index, (trial, job) in list(active.items()):
                    if not job.done():
                        continue
                    del active[index]
                    status = self._ended(trial, job)
                    plan.finished(trial, status)
                    monitor.ended(trial, status)
                if not active:
                    break
                monitor.tick()
                time.sleep(_POLL_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.stopped_by is not None and active:
            ids = sorted({str(job.job_id).split('_')[0] for _, job in active.values()})
            self.log(
                f'{len(active)} trials keep running as jobs {", ".join(ids)}; rerun this '
                'command to wait for them and gather the table (or scancel them)'
            )

    def _on_signal(self, signum, frame):
        self.stopped_by = signum

    def _submit(self, executor, sweep, batch, active, monitor) -> None:
        jobs = []
        with executor.batch():
            for trial in batch:
                command = runner.trial_command(sweep.manifest, trial)
                jobs.append(
                    executor.submit(
                        TrialJob(
                            trial.directory,
                            command,
                            sweep.manifest['cwd'],
                            sweep.workdir,
                            self.name,
                        )
                    )
                )
        for trial, job in zip(batch, jobs):
            trial.update_status(
                status=records.SUBMITTED,
                job_id=str(job.job_id),
                executor=self.name,
                submitted=time.time(),
                host=socket.gethostname(),
                pid=None,
            )
            active[trial.index] = (trial, job)
            monitor.started(trial)
        self.log(
            f'submitted {len(batch)} trials as job(s) '
            f'{", ".join(sorted({str(j.job_id).split("_")[0] for j in jobs}))}'
        )

    def _live_job(self, workdir: str, trial: records.Trial):
        status = trial.status()
        if (
            status.get('status') not in (records.SUBMITTED, records.RUNNING, records.PREEMPTED)
            or status.get('executor') != self.name
            or not status.get('job_id')
        ):
            return None
        job = self._job(workdir, status['job_id'])
        if job is None:
            return None
        try:
            return job if job.state in _ALIVE_STATES else None
        except Exception:  # sacct unreachable: submit again rather than wait forever
            return None

    def _ended(self, trial: records.Trial, job) -> dict:
        """The trial's final status; a job that ended without recording one (killed,
        out of memory, out of requeues) is recorded as an error saying so."""
        status = trial.status()
        if status.get('status') in (records.DONE, records.DIVERGED, records.ERROR):
            return status
        try:
            state = job.state
        except Exception:
            state = 'unknown'
        tail = ''
        try:
            lines = [line for line in (job.stderr() or '').splitlines() if line.strip()]
            tail = f': {lines[-1][:300]}' if lines else ''
        except Exception:
            pass
        error = f'job {job.job_id} ended ({state}) before the trial did{tail}'
        return trial.update_status(status=records.ERROR, error=error, pid=None)
