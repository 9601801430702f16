namespace Paging.Engine;

/// <summary>A run of pages to fill, claimed by whoever created it; the pages of [DemandFirst, DemandEnd) are waited
/// for by faulting threads (poisoned if the store cannot produce them), the rest were read ahead.</summary>
internal struct Fill
{
    public ServedRegion Region;
    public long First;
    public long Count;
    public long DemandFirst;
    public long DemandEnd;

    /// <summary>Read-ahead of an asynchronous shmem/hugetlbfs store: fill every page but leave the first unmapped, so
    /// the reader's fault on it triggers the next window (FaultEngine.BackgroundStep).</summary>
    public bool Marker;

    /// <summary>When the fault batch was read (Stopwatch ticks; 0 for background work): the service time's start.</summary>
    public long Since;
}

/// <summary>
/// A bounded multi-producer multi-consumer queue of fills (Vyukov's array queue): the fault path hands fills to other
/// fill threads without a lock and without allocating. Full means the producer runs the fill itself.
/// </summary>
internal sealed class FillQueue
{
    private struct Cell
    {
        public long Sequence;
        public Fill Item;
    }

    private readonly Cell[] _cells;
    private readonly long _mask;
    private long _enqueue;
    private long _dequeue;

    public FillQueue(int capacity)
    {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), "a power of two of at least 2");
        }
        _cells = new Cell[capacity];
        _mask = capacity - 1;
        for (int i = 0; i < capacity; i++)
        {
            _cells[i].Sequence = i;
        }
    }

    public bool IsEmpty => Volatile.Read(ref _dequeue) >= Volatile.Read(ref _enqueue);

    public bool TryEnqueue(in Fill item)
    {
        long pos = Volatile.Read(ref _enqueue);
        while (true)
        {
            ref var cell = ref _cells[pos & _mask];
            long seq = Volatile.Read(ref cell.Sequence);
            long diff = seq - pos;
            if (diff == 0)
            {
                if (Interlocked.CompareExchange(ref _enqueue, pos + 1, pos) == pos)
                {
                    cell.Item = item;
                    Volatile.Write(ref cell.Sequence, pos + 1);
                    return true;
                }
                pos = Volatile.Read(ref _enqueue);
            }
            else if (diff < 0)
            {
                return false; // full
            }
            else
            {
                pos = Volatile.Read(ref _enqueue);
            }
        }
    }

    public bool TryDequeue(out Fill item)
    {
        long pos = Volatile.Read(ref _dequeue);
        while (true)
        {
            ref var cell = ref _cells[pos & _mask];
            long seq = Volatile.Read(ref cell.Sequence);
            long diff = seq - (pos + 1);
            if (diff == 0)
            {
                if (Interlocked.CompareExchange(ref _dequeue, pos + 1, pos) == pos)
                {
                    item = cell.Item;
                    cell.Item = default;
                    Volatile.Write(ref cell.Sequence, pos + _mask + 1);
                    return true;
                }
                pos = Volatile.Read(ref _dequeue);
            }
            else if (diff < 0)
            {
                item = default;
                return false; // empty
            }
            else
            {
                pos = Volatile.Read(ref _dequeue);
            }
        }
    }
}
