namespace Paging.Engine;

/// <summary>A range of a region still to fill in the background.</summary>
internal struct Work
{
    public ServedRegion Region;
    public long Next;
    public long End;

    /// <summary>A read-ahead window of an asynchronous store: its first page becomes the window's marker (see
    /// FaultEngine.BackgroundStep).</summary>
    public bool Marker;
}

/// <summary>A fixed ring of ranges, in order.</summary>
internal sealed class WorkQueue
{
    private readonly Work[] _items = new Work[FaultEngine.WorkCapacity];
    private int _head;

    public int Count { get; private set; }

    public ref Work Front => ref _items[_head];

    public bool Push(ServedRegion r, long first, long end, bool marker = false)
    {
        if (Count == FaultEngine.WorkCapacity)
        {
            return false;
        }
        _items[(_head + Count) % FaultEngine.WorkCapacity] = new Work { Region = r, Next = first, End = end, Marker = marker };
        Count++;
        return true;
    }

    public void Pop()
    {
        _items[_head] = default;
        _head = (_head + 1) % FaultEngine.WorkCapacity;
        Count--;
    }

    /// <summary>A thread faulted at <paramref name="page"/> inside a queued range, ahead of where the background
    /// had got to: the fault resolves [.., <paramref name="resolvedEnd"/>) itself, so the range continues from
    /// there, ahead of the thread, instead of refilling behind it while the thread faults block after block.</summary>
    public void SkipAhead(ServedRegion r, long page, long resolvedEnd)
    {
        for (int i = 0; i < Count; i++)
        {
            ref var w = ref _items[(_head + i) % FaultEngine.WorkCapacity];
            if (w.Region == r && page >= w.Next && page < w.End)
            {
                w.Next = Math.Min(w.End, Math.Max(w.Next, resolvedEnd));
            }
        }
    }

    /// <summary>Removes every range of a region, keeping the others in order.</summary>
    public void Drop(ServedRegion r)
    {
        int kept = 0;
        for (int i = 0; i < Count; i++)
        {
            var w = _items[(_head + i) % FaultEngine.WorkCapacity];
            if (w.Region != r)
            {
                _items[(_head + kept++) % FaultEngine.WorkCapacity] = w;
            }
        }
        for (int i = kept; i < Count; i++)
        {
            _items[(_head + i) % FaultEngine.WorkCapacity] = default;
        }
        Count = kept;
    }
}
