using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Paging.BufferPool;

namespace Paging.Bench;

/// <summary>
/// The classic buffer pool the bufferpool benchmark compares against: a fixed set of 4 KiB frames, a hash table from
/// page id to frame (256 lock stripes), fix/unfix with pin counts, CLOCK with a reference bit, misses read with
/// pread(2) on an O_DIRECT file, dirty victims written with pwrite(2) before their frame is reused. What a textbook
/// DBMS does — the baseline the Paging buffer pool must match.
/// </summary>
internal sealed unsafe class PreadPool : IDisposable
{
    private const int Stripes = 256;
    private const int Loading = -1;

    private readonly SafeFileHandle _file;
    private readonly int _frames;
    private readonly byte* _memory;
    private readonly long[] _framePage;      // page id in the frame, -1 free
    private readonly int[] _pins;            // pin count; Loading while the frame is being (re)filled
    private readonly int[] _referenced;
    private readonly int[] _dirty;
    private readonly Dictionary<long, int>[] _tables = new Dictionary<long, int>[Stripes];
    private readonly Lock[] _locks = new Lock[Stripes];
    private readonly Lock _evictLock = new();
    private int _hand;
    private long _bytesRead, _bytesWritten;

    public PreadPool(string path, long budgetBytes)
    {
        _frames = (int)(budgetBytes / BTreeFile.PageSize);
        _file = Paging.Backends.DirectIo.Open(path, writable: true); // the file store's O_DIRECT open
        _memory = (byte*)NativeMemory.AlignedAlloc((nuint)_frames * BTreeFile.PageSize, 4096);
        _framePage = new long[_frames];
        Array.Fill(_framePage, -1);
        _pins = new int[_frames];
        _referenced = new int[_frames];
        _dirty = new int[_frames];
        for (int i = 0; i < Stripes; i++)
        {
            _tables[i] = new Dictionary<long, int>(_frames / Stripes * 2);
            _locks[i] = new Lock();
        }
    }

    public long BytesRead => Volatile.Read(ref _bytesRead);
    public long BytesWritten => Volatile.Read(ref _bytesWritten);
    public long ResidentBytes => (long)_framePage.Count(p => p >= 0) * BTreeFile.PageSize;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int StripeOf(long page) => (int)(((ulong)page * 0x9E3779B97F4A7C15UL) >> 56);

    /// <summary>Pins page <paramref name="page"/> in a frame, reading it on a miss; returns the frame's bytes.</summary>
    public byte* Fix(long page, out int frame)
    {
        int stripe = StripeOf(page);
        while (true)
        {
            lock (_locks[stripe])
            {
                if (_tables[stripe].TryGetValue(page, out frame))
                {
                    if (Volatile.Read(ref _pins[frame]) != Loading)
                    {
                        Interlocked.Increment(ref _pins[frame]);
                        Volatile.Write(ref _referenced[frame], 1);
                        return _memory + (long)frame * BTreeFile.PageSize;
                    }
                    // being loaded by another thread: wait outside the lock
                }
                else
                {
                    frame = -1;
                }
            }
            if (frame >= 0)
            {
                Thread.SpinWait(20);
                continue;
            }
            if (TryLoad(page, stripe, out frame))
            {
                return _memory + (long)frame * BTreeFile.PageSize;
            }
        }
    }

    public void Unfix(int frame, bool dirty)
    {
        if (dirty)
        {
            Volatile.Write(ref _dirty[frame], 1);
        }
        Interlocked.Decrement(ref _pins[frame]);
    }

    /// <summary>Takes a victim frame (CLOCK), maps the page to it as Loading, reads it, publishes it pinned once.</summary>
    private bool TryLoad(long page, int stripe, out int frame)
    {
        frame = Victim();
        // Publish the mapping (as Loading) unless another thread got there first.
        lock (_locks[stripe])
        {
            if (_tables[stripe].ContainsKey(page))
            {
                Volatile.Write(ref _pins[frame], 0); // give the victim back (free)
                return false;
            }
            _tables[stripe].Add(page, frame);
            _framePage[frame] = page;
        }
        byte* bytes = _memory + (long)frame * BTreeFile.PageSize;
        int n = RandomAccess.Read(_file, new Span<byte>(bytes, BTreeFile.PageSize), page * BTreeFile.PageSize);
        if (n < BTreeFile.PageSize)
        {
            new Span<byte>(bytes + n, BTreeFile.PageSize - n).Clear();
        }
        Interlocked.Add(ref _bytesRead, BTreeFile.PageSize);
        Volatile.Write(ref _referenced[frame], 1);
        Volatile.Write(ref _pins[frame], 1); // published, pinned by this thread
        return true;
    }

    /// <summary>The next unpinned frame without its reference bit (clearing bits on the way), unmapped from its old
    /// page and written back if dirty; returned with pins = Loading.</summary>
    private int Victim()
    {
        while (true)
        {
            int f;
            lock (_evictLock)
            {
                f = _hand;
                _hand = (_hand + 1) % _frames;
            }
            if (Volatile.Read(ref _pins[f]) != 0)
            {
                continue;
            }
            if (Interlocked.Exchange(ref _referenced[f], 0) == 1)
            {
                continue;
            }
            long old = Volatile.Read(ref _framePage[f]);
            if (old < 0)
            {
                if (Interlocked.CompareExchange(ref _pins[f], Loading, 0) == 0)
                {
                    return f;
                }
                continue;
            }
            // Claim it under its page's stripe lock, where hits pin: a hit can no longer slip in.
            int s = StripeOf(old);
            lock (_locks[s])
            {
                if (_framePage[f] != old || Interlocked.CompareExchange(ref _pins[f], Loading, 0) != 0)
                {
                    continue;
                }
            }
            // Written back before the mapping goes: a thread that wants the page meanwhile waits on Loading, then
            // misses and reads what was just written.
            if (Interlocked.Exchange(ref _dirty[f], 0) == 1)
            {
                RandomAccess.Write(_file, new ReadOnlySpan<byte>(_memory + (long)f * BTreeFile.PageSize, BTreeFile.PageSize), old * BTreeFile.PageSize);
                Interlocked.Add(ref _bytesWritten, BTreeFile.PageSize);
            }
            lock (_locks[s])
            {
                _tables[s].Remove(old);
                _framePage[f] = -1;
            }
            return f;
        }
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_memory);
        _file.Dispose();
    }
}

/// <summary>The pool's pages as <see cref="IPageAccess"/> (fix/unfix through the hash table).</summary>
internal readonly unsafe struct PoolPages(PreadPool pool) : IPageAccess
{
    [ThreadStatic] private static int[]? t_frames;

    public byte* Fix(long pageId)
    {
        var frames = t_frames ??= new int[8];
        byte* p = pool.Fix(pageId, out int frame);
        frames[(int)(pageId & 7)] = frame; // a descent holds at most one page per level: the slot is free again
        return p;
    }

    public void Unfix(long pageId, bool dirty) => pool.Unfix(t_frames![(int)(pageId & 7)], dirty);
}
