using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Extensions.ObjectPool;
using Paging.Logging;
using Paging.Protocol;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>Fills of asynchronous stores: started by a fill thread, up to <see cref="MaxAsyncInFlight"/> per store at
/// once, and mapped by whichever thread completes the read. The per-fill state is pooled
/// (Microsoft.Extensions.ObjectPool), so a fill allocates nothing once the pool is warm.</summary>
internal sealed unsafe partial class FaultEngine
{
    private int _asyncInFlight;

    private void StartAsync(in Fill f)
    {
        var r = f.Region;
        if (!r.TryStartAsync(MaxAsyncInFlight))
        {
            // At the store's limit: wait for a slot (started when one of its reads completes). The queue's segments
            // are allocated only in this overload case.
            r.Waiting.Enqueue(f);
            if (r.TryStartAsync(MaxAsyncInFlight))
            {
                StartWaiting(r); // a read completed between the check and the enqueue
            }
            return;
        }
        Interlocked.Increment(ref _asyncInFlight);
        _asyncFills.Get().Begin(f);
    }

    /// <summary>A slot of <paramref name="r"/>'s store is held: start the next waiting fill in it, or give it back.</summary>
    private void StartWaiting(ServedRegion r)
    {
        if (r.Waiting.TryDequeue(out var next))
        {
            Interlocked.Increment(ref _asyncInFlight);
            _asyncFills.Get().Begin(next);
        }
        else
        {
            r.EndAsync();
            if (!r.Waiting.IsEmpty && r.TryStartAsync(MaxAsyncInFlight))
            {
                StartWaiting(r);
            }
        }
    }

    /// <summary>One asynchronous fill in flight: its destination (the staging mapping, or its own buffer for an
    /// anonymous arena), its cancellation (the region's read deadline), its retries.</summary>
    internal sealed class AsyncFill : MemoryManager<byte>
    {
        private readonly FaultEngine _engine;
        private readonly Action _onCompleted;
        private readonly byte* _buffer;
        private CancellationTokenSource _cancellation = new();
        private CancellationTokenRegistration _timeoutRegistration;
        private ValueTask<PageReadStatus> _pending;
        private Fill _fill;
        private byte* _destination;
        private int _length;
        private int _attempt;
        private bool _wakeMarker;
        private int _state; // FillThread.Reading → Resolving (completion) or TimedOut (deadline): one CAS decides

        public AsyncFill(FaultEngine engine)
        {
            _engine = engine;
            _onCompleted = OnCompleted;
            _buffer = (byte*)NativeMemory.AlignedAlloc(MaxRunBytes, 4096);
        }

        public void Begin(in Fill fill)
        {
            _fill = fill;
            var r = fill.Region;
            long offset = fill.First << r.PageShift;
            _length = checked((int)(fill.Count << r.PageShift));
            if (r.Kind == ArenaKind.Anonymous || WritesThroughMemfd(r))
            {
                _destination = _buffer;
            }
            else
            {
                _destination = r.Staging!.Pointer + offset;
                PrepareStaging(r, offset, _length);
            }
            _attempt = 1;
            _state = (int)FillThread.Reading;
            if (!_cancellation.TryReset())
            {
                _cancellation.Dispose();
                _cancellation = new CancellationTokenSource();
            }
            // The deadline: cancel the read, and if the store ignores that, poison the waiting pages anyway.
            _cancellation.CancelAfter(r.ReadTimeout);
            _timeoutRegistration = _cancellation.Token.UnsafeRegister(static s => ((AsyncFill)s!).OnDeadline(), this);
            Issue();
        }

        // The read's ValueTask is kept in a field between Issue and OnCompleted and consumed exactly once there
        // (GetResult): awaiting it would allocate a state machine per fill.
        [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2012", Justification = "consumed once, in OnCompleted")]
        private void Issue()
        {
            var r = _fill.Region;
            try
            {
                _pending = r.Store.ReadAsync(_fill.First << r.PageShift, Memory, _cancellation.Token);
            }
#pragma warning disable CA1031 // A store is user code: a synchronous throw is a failed read like any other.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _pending = ValueTask.FromException<PageReadStatus>(e);
            }
            if (_pending.IsCompleted)
            {
                OnCompleted();
            }
            else
            {
                _pending.GetAwaiter().UnsafeOnCompleted(_onCompleted);
            }
        }

        private void OnDeadline()
        {
            // Runs on a timer thread when the read has not completed in time. The store should now throw
            // OperationCanceledException; if it never returns at all, its waiting pages must not wait with it.
            if (Interlocked.CompareExchange(ref _state, (int)FillThread.TimedOut, (int)FillThread.Reading) == (int)FillThread.Reading)
            {
                _engine.OnReadTimedOut(_fill);
            }
        }

        private void OnCompleted()
        {
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            var r = _fill.Region;
            PageReadStatus status = default;
            Exception? error = null;
            try
            {
                status = _pending.GetAwaiter().GetResult();
            }
#pragma warning disable CA1031 // A store is user code: whatever it throws becomes a retry or a poisoned page.
            catch (Exception e)
#pragma warning restore CA1031
            {
                error = e;
            }
            _pending = default;
            if (error is not null && IsTransient(error) && _attempt < FillAttempts && Volatile.Read(ref _state) == (int)FillThread.Reading
                && !(error is OperationCanceledException && _cancellation.IsCancellationRequested))
            {
                _attempt++;
                r.Control.Add(RegionStat.Retries, 1);
                Issue();
                return;
            }
            if (Interlocked.CompareExchange(ref _state, (int)FillThread.Resolving, (int)FillThread.Reading) == (int)FillThread.Reading)
            {
                if (error is null)
                {
                    Map(r, status);
                }
                else
                {
                    r.Control.Add(RegionStat.Errors, 1);
                    Log.StoreReadFailed(_engine._logger, error, r.StoreName, _length, _fill.First << r.PageShift, r.Id, _attempt);
                    for (long p = _fill.DemandFirst; p < _fill.DemandEnd; p++)
                    {
                        _engine.Poison(r, p, 1);
                    }
                }
            }
            RecordService(r, _fill.Since);
            Finish(allocatedBefore);
        }

        private void Map(ServedRegion r, PageReadStatus status)
        {
            if (status == PageReadStatus.Data)
            {
                CountBytesRead(r, _fill.First << r.PageShift, _length);
            }
            long count = _fill.Count;
            if (r.Kind == ArenaKind.Anonymous)
            {
                _engine.MapAnonymous(r, _fill.First, count, status, _buffer, stale: false);
            }
            else
            {
                if (WritesThroughMemfd(r))
                {
                    if (!StoreInMemfd(r, _fill.First << r.PageShift, status, out var errno))
                    {
                        r.Control.Add(RegionStat.Errors, 1);
                        Log.UffdCallFailed(_engine._logger, "pwrite(memfd)", (ulong)_length, r.Start + ((ulong)_fill.First << r.PageShift), errno);
                        for (long p = _fill.DemandFirst; p < _fill.DemandEnd; p++)
                        {
                            _engine.Poison(r, p, 1);
                        }
                        return;
                    }
                    if (status == PageReadStatus.Zero)
                    {
                        r.Control.Add(RegionStat.ZeroPagesFilled, count);
                    }
                }
                else if (status == PageReadStatus.Zero)
                {
                    new Span<byte>(_destination, _length).Clear();
                    r.Control.Add(RegionStat.ZeroPagesFilled, count);
                }
                r.Control.MarkFilled(_fill.First, count);
                if (_fill.Marker && count > 1)
                {
                    // The marker page stays unmapped. A thread that faulted on it meanwhile joined this fill and
                    // waits for its wake, which Finish sends once the claims are released: it faults again and maps
                    // the page itself (MINOR) — the trigger wanted. Woken before the release, its second fault would
                    // see the page still claimed and wait for this fill again, forever.
                    _engine.Continue(null, r, _fill.First + 1, count - 1, stale: false);
                    _wakeMarker = true;
                }
                else
                {
                    _engine.Continue(null, r, _fill.First, count, stale: false);
                }
                r.Control.Add(RegionStat.PagesFilled, count);
            }
            r.Control.Add(RegionStat.PagesPrefetched, count - Overlap(_fill.First, _fill.First + count, _fill.DemandFirst, _fill.DemandEnd));
        }

        /// <summary>Shmem arenas take an asynchronous fill's bytes in the fill's own buffer, then pwrite them into the
        /// memfd (<see cref="WriteMemfd"/>).</summary>
        private static bool WritesThroughMemfd(ServedRegion r) => r.Kind == ArenaKind.Shmem && r.Memfd is not null;

        /// <summary>Puts the fill's bytes (or zeros) into the memfd at <paramref name="offset"/>.</summary>
        private bool StoreInMemfd(ServedRegion r, long offset, PageReadStatus status, out Errno errno)
        {
            if (status == PageReadStatus.Zero)
            {
                // Written as zeros, not fallocated: fallocate keeps whatever a page already holds.
                new Span<byte>(_buffer, _length).Clear();
            }
            return WriteMemfd(r, _buffer, _length, offset, out errno);
        }

        private void Finish(long allocatedBefore)
        {
            var r = _fill.Region;
            r.AddPending(-_fill.Count); // after Map: its pages are counted as resident now (or were never mapped)
            _timeoutRegistration.Dispose();
            _engine.ReleaseClaims(r, _fill.First, _fill.Count);
            if (_wakeMarker)
            {
                _wakeMarker = false;
                _engine.Wake(r, r.Start + ((ulong)_fill.First << r.PageShift), (ulong)r.PageSize);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            if (allocated != 0)
            {
                r.Control.Add(RegionStat.ManagedBytesAllocated, allocated);
            }
            r.Exit();
            _fill = default;
            _destination = null;
            var engine = _engine;
            engine._asyncFills.Return(this);
            Interlocked.Decrement(ref engine._asyncInFlight);
            engine.StartWaiting(r);
            if (engine.HasBackgroundWork)
            {
                engine.SignalWork(); // background work may have waited for a slot of this store
            }
        }

        // ---- MemoryManager: the destination as Memory<byte>, valid while the read is in flight ----

        public override Span<byte> GetSpan() => new(_destination, _length);

        public override MemoryHandle Pin(int elementIndex = 0) => new(_destination + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
            _cancellation.Dispose();
            NativeMemory.AlignedFree(_buffer);
        }

        /// <summary>The pool's policy: ops are created for this engine and always reusable.</summary>
        internal sealed class Policy(FaultEngine engine) : PooledObjectPolicy<AsyncFill>
        {
            public override AsyncFill Create() => new(engine);

            public override bool Return(AsyncFill obj) => true;
        }

        /// <summary>The pool of fills: Microsoft.Extensions.ObjectPool's policy shape over a fixed array stack, so a
        /// warm pool allocates nothing (DefaultObjectPool's overflow queue allocates segments as it grows).</summary>
        internal sealed class Pool(FaultEngine engine, int capacity) : ObjectPool<AsyncFill>
        {
            private readonly Policy _policy = new(engine);
            private readonly AsyncFill[] _items = new AsyncFill[capacity];
            private readonly Lock _lock = new();
            private int _count;

            public override AsyncFill Get()
            {
                lock (_lock)
                {
                    if (_count > 0)
                    {
                        var item = _items[--_count];
                        _items[_count] = null!;
                        return item;
                    }
                }
                return _policy.Create();
            }

            public override void Return(AsyncFill obj)
            {
                if (!_policy.Return(obj))
                {
                    return;
                }
                lock (_lock)
                {
                    if (_count < _items.Length)
                    {
                        _items[_count++] = obj;
                        return;
                    }
                }
                ((IDisposable)obj).Dispose(); // beyond the pool's capacity: free its buffer
            }
        }
    }
}
