using System.Diagnostics;
using Paging.Interop;
using Paging.Logging;
using Paging.Metrics;
using Paging.Protocol;
using Paging.Simd;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>Reading a run from its store and mapping it: shmem/hugetlbfs fill the page cache through the staging
/// mapping (or splice into the memfd) and UFFDIO_CONTINUE; anonymous arenas read into the thread's buffer and
/// UFFDIO_COPY (or ZEROPAGE). The mapping ioctls wake the threads waiting in the run. Failures are retried, then
/// the run is read page by page so one bad page never fails its neighbours; a page a thread waits for and that
/// cannot be read is poisoned (SIGBUS, never a wrong byte, never a hang).</summary>
internal sealed unsafe partial class FaultEngine
{
    /// <summary>Runs a claimed fill: synchronously here, or started asynchronously for an asynchronous store. The
    /// fill's claims and its region reference are released when it is done.</summary>
    private void Execute(FillThread t, ref Fill f)
    {
        var r = f.Region;
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        WaitForRoom(r, f.Count);
        if (r.IsAsync)
        {
            r.AddPending(f.Count); // until Finish: mapped (resident) or failed
            StartAsync(f);
            long started = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            if (started != 0)
            {
                r.Control.Add(RegionStat.ManagedBytesAllocated, started);
            }
            return;
        }
        try
        {
            if (!ReadAndMap(t, f, f.First, f.Count, out bool abandoned) && !abandoned)
            {
                // One bad page must not fail the good ones read with it: go page by page. Only a page a thread waits
                // for is poisoned; a read-ahead page that fails stays unfilled and reports its error when touched.
                for (long page = f.First; page < f.First + f.Count && !abandoned; page++)
                {
                    if (!ReadAndMap(t, f, page, 1, out abandoned) && !abandoned && page >= f.DemandFirst && page < f.DemandEnd)
                    {
                        Poison(r, page, 1);
                    }
                }
            }
            RecordService(r, f.Since);
        }
        finally
        {
            ReleaseClaims(r, f.First, f.Count);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            if (allocated != 0)
            {
                r.Control.Add(RegionStat.ManagedBytesAllocated, allocated);
            }
            r.Exit(); // last: the exit of a removed region's last user unmaps its control block
        }
    }

    /// <summary>Releases claims — a fill's, a Discard's, an eviction's, any — and wakes the range when a fault may be
    /// waiting on it: one joined the claim (see <see cref="PageClaims.Join"/>: the owner's ioctl may have come before
    /// it), or a page is not filled (a failed read-ahead page, an abandoned read, a page given up or punched), so its
    /// waiters fault again and get a fill of their own instead of waiting forever.</summary>
    private void ReleaseClaims(ServedRegion r, long first, long count)
    {
        if (r.Claims.Release(first, count))
        {
            // A fault joined after this fill mapped its page (and something unmapped it since): wake it to fault again.
            Wake(r, r.Start + ((ulong)first << r.PageShift), (ulong)count << r.PageShift);
            return;
        }
        for (long p = first; p < first + count; p++)
        {
            if (!r.Control.IsFilled(p))
            {
                Wake(r, r.Start + ((ulong)first << r.PageShift), (ulong)count << r.PageShift);
                return;
            }
        }
    }

    private static void RecordService(ServedRegion r, long since)
    {
        if (since != 0)
        {
            long ns = (long)Stopwatch.GetElapsedTime(since).TotalNanoseconds;
            r.Control.RecordLatency(ns);
            PagerMetrics.ServiceTime.Record(ns / 1000.0);
        }
    }

    /// <summary>Reads pages [page, page+count) of <paramref name="f"/>'s region (with retries) and maps them.
    /// False when the store failed; <paramref name="abandoned"/> when the watchdog timed the read out (it poisoned
    /// the waiting pages already).</summary>
    private bool ReadAndMap(FillThread t, in Fill f, long page, long count, out bool abandoned)
    {
        var r = f.Region;
        abandoned = false;
        t.BeginRead(f);
        try
        {
            if (r.Kind == ArenaKind.Anonymous || r.CallerFills)
            {
                // Caller-fill regions too: the application may install the same page with its own UFFDIO_COPY, and
                // only a copy is atomic (a read into the staging mapping could overwrite a page the application
                // installed and wrote meanwhile; a second copy just meets EEXIST).
                int length = checked((int)(count << r.PageShift));
                if (!TryRead(r, page << r.PageShift, new Span<byte>(t.CopyBuffer, length), out var status))
                {
                    abandoned = !t.TryBeginResolve();
                    return false;
                }
                if (!t.TryBeginResolve())
                {
                    abandoned = true;
                    return true;
                }
                MapAnonymous(r, page, count, status, t.CopyBuffer, stale: false);
                r.Control.Add(RegionStat.PagesPrefetched, count - Overlap(page, page + count, f.DemandFirst, f.DemandEnd));
                return true;
            }
            if (!FillStaging(t, r, page, count))
            {
                abandoned = !t.TryBeginResolve();
                return false;
            }
            if (!t.TryBeginResolve())
            {
                abandoned = true;
                return true;
            }
            r.Control.MarkFilled(page, count);
            Continue(t, r, page, count, stale: false);
            r.Control.Add(RegionStat.PagesFilled, count);
            r.Control.Add(RegionStat.PagesPrefetched, count - Overlap(page, page + count, f.DemandFirst, f.DemandEnd));
            return true;
        }
        finally
        {
            t.EndFill();
        }
    }

    private static long Overlap(long a, long b, long c, long d) => Math.Max(0, Math.Min(b, d) - Math.Max(a, c));

    /// <summary>The watchdog's verdict on a synchronous read past its deadline: the pages threads wait for are
    /// poisoned (they get SIGBUS instead of waiting forever); the read's result, when it comes, is dropped.</summary>
    internal void OnReadTimedOut(in Fill f)
    {
        var r = f.Region;
        r.Control.Add(RegionStat.Errors, 1);
        Log.StoreReadTimedOut(_logger, r.StoreName, f.First << r.PageShift, r.Id, r.ReadTimeout.TotalSeconds);
        for (long p = f.DemandFirst; p < f.DemandEnd; p++)
        {
            if (!r.Control.IsFilled(p))
            {
                Poison(r, p, 1);
            }
        }
    }

    /// <summary>Maps filled pages a thread faulted on again: shmem/hugetlbfs pages in the page cache whose mapping
    /// was dropped (a MINOR fault) or a stale message (CONTINUE finds it mapped: EEXIST, then a wake); anonymous pages
    /// are read again under a claim (COPY is atomic: EEXIST if present), since a set bit cannot tell a mapped page
    /// from one the application dropped with MADV_DONTNEED.</summary>
    private void MapAgain(FillThread t, ServedRegion r, long page, long count)
    {
        if (r.TrackWrites && r.Kind != ArenaKind.Anonymous)
        {
            MapAgainTracked(t, r, page, count);
            return;
        }
        if (r.Kind != ArenaKind.Anonymous)
        {
            // A claimed page is a fill between marking it and mapping it: its CONTINUE wakes this fault. Mapping it
            // here too would race that CONTINUE (one of the two would meet EEXIST on a fresh fill).
            long p = page, end = page + count;
            while (p < end)
            {
                if (r.Claims.IsClaimed(p))
                {
                    JoinOrWake(r, p);
                    p++;
                    continue;
                }
                long q = p + 1;
                while (q < end && !r.Claims.IsClaimed(q))
                {
                    q++;
                }
                Continue(t, r, p, q - p, stale: true);
                p = q;
            }
            return;
        }
        for (long p = page; p < page + count; p++)
        {
            if (!r.Claims.TryClaim(p))
            {
                JoinOrWake(r, p); // its owner wakes it on release
                continue;
            }
            try
            {
                if (r.Shadow != 0 && TakeBackTracked(t, r, p))
                {
                    continue;
                }
                if (TryRead(r, p << r.PageShift, new Span<byte>(t.CopyBuffer, r.PageSize), out var status))
                {
                    MapAnonymous(r, p, 1, status, t.CopyBuffer, stale: true);
                }
                else
                {
                    Poison(r, p, 1);
                }
            }
            finally
            {
                ReleaseClaims(r, p, 1);
            }
        }
    }

    /// <summary>MapAgain for a region whose writes are tracked (a page the eviction clock unmapped, touched again). The
    /// page's PTE is empty or holds a uffd-wp marker: empty means it may have been written before it was unmapped,
    /// and mapping it protected would lose that, so the pages are claimed (the evictor cannot take them meanwhile),
    /// read with PAGEMAP_SCAN, marked dirty where the scan cannot prove them clean, then mapped protected.</summary>
    private void MapAgainTracked(FillThread t, ServedRegion r, long page, long count)
    {
        long p = page, end = page + count;
        while (p < end)
        {
            if (!r.Claims.TryClaim(p))
            {
                JoinOrWake(r, p); // its owner (a fill, an eviction, a write-back) wakes this fault when it is done
                p++;
                continue;
            }
            long q = p + 1;
            while (q < end && r.Claims.TryClaim(q))
            {
                q++;
            }
            try
            {
                int n = (int)(q - p);
                var categories = t.Categories.AsSpan(0, Math.Min(n, t.Categories.Length));
                if (_syncWrites)
                {
                    // Synchronous tracking: the dirty bitmap already knows every write; mapped protected again below.
                }
                else if (n <= t.Categories.Length && App.Categories(r.Start + ((ulong)p << r.PageShift), r.PageSize, categories, t.ScanRegions, out _))
                {
                    for (int i = 0; i < n; i++)
                    {
                        var c = categories[i];
                        if ((c & PageCategory.Present) == 0 && ((c & PageCategory.Written) != 0 || (c & PageCategory.Swapped) == 0))
                        {
                            r.Control.MarkDirty(p + i, 1);
                        }
                    }
                }
                else
                {
                    r.Control.MarkDirty(p, n); // cannot tell: a write-back too many, never a write lost
                }
                for (long x = p; x < q; x++)
                {
                    if (!r.Control.IsFilled(x))
                    {
                        // Evicted between the fault and the claim: wake it to fault again (a fresh fill).
                        r.Control.ClearDirty(x, 1);
                        Wake(r, r.Start + ((ulong)x << r.PageShift), (ulong)r.PageSize);
                        continue;
                    }
                    long y = x + 1;
                    while (y < q && r.Control.IsFilled(y))
                    {
                        y++;
                    }
                    // No fill thread: a page missing from the page cache (EFAULT) is cleared and woken, not refilled
                    // under a claim this thread holds.
                    Continue(null, r, x, y - x, stale: true);
                    x = y - 1;
                }
            }
            finally
            {
                ReleaseClaims(r, p, q - p);
            }
            p = q;
        }
    }

    // ---------- shmem / hugetlbfs: fill the page cache through the staging mapping, then UFFDIO_CONTINUE ----------

    /// <summary>Puts the bytes of pages [page, page+count) into the memfd's page cache. Does not mark or map them.</summary>
    private bool FillStaging(FillThread t, ServedRegion r, long page, long count)
    {
        long offset = page << r.PageShift;
        int length = checked((int)(count << r.PageShift));
        var destination = new Span<byte>(r.Staging!.Pointer + offset, length);
        if (r.SpliceSource is { } file && TrySpliceFill(t, r, file, offset, length, out long copied))
        {
            if (copied < length)
            {
                // Past end-of-file: zeros (also erasing anything a crashed pager left in those pages).
                destination[(int)copied..].Clear();
                if (r.TrackWrites)
                {
                    ZapStaging(r, offset + copied, length - copied);
                }
            }
            if (copied == 0)
            {
                r.Control.Add(RegionStat.ZeroPagesFilled, count);
            }
            // Counted in whole pages, as the pread path counts what it asked for (a partial last page is a page read).
            long read = Math.Min(length, (copied + r.PageSize - 1) & ~(long)(r.PageSize - 1));
            r.Control.Add(RegionStat.BytesRead, read);
            PagerMetrics.BytesRead.Add(read);
            return true;
        }
        if (r.Kind == ArenaKind.Shmem && r.Memfd is not null && length <= MaxRunBytes)
        {
            // Into the thread's buffer, then pwrite into the memfd: no page tables in the staging mapping (see
            // WriteMemfd).
            var buffer = new Span<byte>(t.CopyBuffer, length);
            if (!TryRead(r, offset, buffer, out var read))
            {
                return false;
            }
            if (read == PageReadStatus.Zero)
            {
                buffer.Clear();
                r.Control.Add(RegionStat.ZeroPagesFilled, count);
            }
            if (!WriteMemfd(r, t.CopyBuffer, length, offset, out var errno))
            {
                r.Control.Add(RegionStat.Errors, 1);
                Log.UffdCallFailed(_logger, "pwrite(memfd)", (ulong)length, r.Start + (ulong)offset, errno);
                return false;
            }
            return true;
        }
        PrepareStaging(r, offset, length);
        if (!TryRead(r, offset, destination, out var status))
        {
            return false;
        }
        if (status == PageReadStatus.Zero)
        {
            // Clearing (rather than leaving a hole) both allocates the page-cache page CONTINUE needs and erases
            // whatever a crashed pager may have half-written there.
            destination.Clear();
            r.Control.Add(RegionStat.ZeroPagesFilled, count);
        }
        return true;
    }

    /// <summary>Writes a shmem fill's bytes into the memfd with pwrite(2): the page cache is filled without building
    /// page tables in the pager — 0.9–1.1 µs per 4 KiB page against 8.2–8.5 µs for MADV_POPULATE_WRITE + memcpy into
    /// the staging mapping on this VM (a C probe, 256 MiB in 256 KiB runs; docs/BENCHMARKS.md §7). Hugetlbfs has no
    /// write(2) and keeps the staging mapping.</summary>
    internal static bool WriteMemfd(ServedRegion r, byte* buffer, int length, long offset, out Errno errno)
    {
        errno = Errno.None;
        long done = 0;
        while (done < length)
        {
            nint n = Libc.Pwrite(r.Memfd!, buffer + done, (nuint)(length - done), offset + done);
            if (n <= 0)
            {
                errno = n < 0 ? (Errno)System.Runtime.InteropServices.Marshal.GetLastPInvokeError() : Errno.EIO;
                if (errno == Errno.EINTR)
                {
                    continue;
                }
                return false;
            }
            done += n;
        }
        return true;
    }

    /// <summary>Allocates and maps a run's page-cache pages in one call before a store writes them: otherwise every
    /// 4 KiB of the write takes its own kernel page fault in the (unregistered) staging mapping.</summary>
    private static void PrepareStaging(ServedRegion r, long offset, int length) =>
        _ = Libc.Madvise((nint)(r.Staging!.Pointer + offset), (nuint)length, Advice.PopulateWrite);

    /// <summary>
    /// Copies [offset, offset+length) of a file-backed store into the shmem memfd with splice(2) (file → pipe → memfd,
    /// explicit offsets on both ends): a kernel-side copy that takes no page faults in the staging mapping. Returns
    /// false, having possibly written part of the range, when splice fails; the caller then fills the whole range the
    /// ordinary way (pread with retries, poisoning), which overwrites it. <paramref name="copied"/> stops short at EOF.
    /// </summary>
    private static bool TrySpliceFill(FillThread t, ServedRegion r, FileSlice source, long offset, int length, out long copied)
    {
        copied = 0;
        if (t.PipeWrite is null && !OpenPipe(t))
        {
            return false;
        }
        long inOffset = source.Offset + offset;
        long outOffset = offset;
        while (copied < length)
        {
            nint n = Libc.Splice(source.File, &inOffset, t.PipeWrite!, null, (nuint)Math.Min(length - copied, t.PipeCapacity), Libc.SPLICE_F_MOVE);
            if (n == 0)
            {
                break; // end of file
            }
            if (n < 0)
            {
                if (Libc.LastErrno == Errno.EINTR)
                {
                    continue;
                }
                return false; // nothing is in the pipe: the pread path reports the error with retries
            }
            long inPipe = n;
            while (inPipe > 0)
            {
                nint m = Libc.Splice(t.PipeRead!, null, r.Memfd!, &outOffset, (nuint)inPipe, Libc.SPLICE_F_MOVE);
                if (m <= 0)
                {
                    if (m < 0 && Libc.LastErrno == Errno.EINTR)
                    {
                        continue;
                    }
                    ClosePipe(t); // bytes may be stranded in it: start the next fill with an empty pipe
                    return false;
                }
                inPipe -= m;
            }
            copied += n;
        }
        return true;
    }

    private static bool OpenPipe(FillThread t)
    {
        int* fds = stackalloc int[2];
        if (Libc.Pipe2(fds, OpenFlags.CloseOnExec) != 0)
        {
            return false;
        }
        t.PipeRead = new FileDescriptor(fds[0]);
        t.PipeWrite = new FileDescriptor(fds[1]);
        // A pipe holds 64 KiB by default; make one fill run (up to MaxRunBytes) one splice pair.
        int size = Libc.Fcntl(t.PipeWrite, Libc.F_SETPIPE_SZ, MaxRunBytes);
        t.PipeCapacity = size > 0 ? size : 65536;
        return true;
    }

    private static void ClosePipe(FillThread t)
    {
        t.PipeRead?.Dispose();
        t.PipeWrite?.Dispose();
        t.PipeRead = t.PipeWrite = null;
    }

    /// <summary>Maps filled pages with UFFDIO_CONTINUE, which wakes the threads waiting on them. A page found mapped
    /// already (EEXIST) is woken and skipped; a page whose bit is set but which is not in the page cache (EFAULT: the
    /// application punched or MADV_REMOVEd it) is filled again under a claim by a fill thread
    /// (<paramref name="t"/>), or, from a completion thread (null), has its bit cleared and is woken to fault again.
    /// <paramref name="stale"/>: the pages were filled before this fault was read, so EEXIST is a stale fault.</summary>
    private void Continue(FillThread? t, ServedRegion r, long page, long count, bool stale)
    {
        ulong start = r.Start + ((ulong)page << r.PageShift);
        ulong length = (ulong)count << r.PageShift;
        int refills = 0;
        while (length > 0)
        {
            // A region whose writes are tracked maps pages write-protected: clean until the kernel lifts the protection
            // at the first write (WP_ASYNC: no fault), which PAGEMAP_SCAN then reports.
            var errno = _uffd.Continue(start, length, out long mapped, r.TrackWrites);
            if (errno == Errno.None)
            {
                r.Control.Add(RegionStat.Resolutions, 1);
                return;
            }
            if (mapped > 0)
            {
                start += (ulong)mapped;
                length -= (ulong)mapped;
                continue;
            }
            if (HandleResolveError(r, errno, stale, ref start, ref length))
            {
                continue;
            }
            if (errno != Errno.EFAULT)
            {
                return;
            }
            long p = (long)((start - r.Start) >> r.PageShift);
            if (t is null)
            {
                r.Control.ClearFilled(p);
                Wake(r, start, (ulong)r.PageSize);
                start += (ulong)r.PageSize;
                length -= Math.Min(length, (ulong)r.PageSize);
                continue;
            }
            if (refills++ < FillAttempts && stale && r.Claims.TryClaim(p))
            {
                try
                {
                    r.Control.ClearFilled(p);
                    if (r.CallerFills)
                    {
                        // Atomic against the application's own fill of the page (see ReadAndMap).
                        if (TryRead(r, p << r.PageShift, new Span<byte>(t.CopyBuffer, r.PageSize), out var status))
                        {
                            MapAnonymous(r, p, 1, status, t.CopyBuffer, stale: true);
                            start += (ulong)r.PageSize;
                            length -= Math.Min(length, (ulong)r.PageSize);
                            continue;
                        }
                    }
                    else if (FillStaging(t, r, p, 1))
                    {
                        r.Control.MarkFilled(p, 1);
                        continue;
                    }
                }
                finally
                {
                    ReleaseClaims(r, p, 1);
                }
            }
            Log.ContinueKeepsFailing(_logger, start);
            Poison(r, p, (long)(length >> r.PageShift));
            return;
        }
    }

    /// <summary>The error codes shared by COPY, ZEROPAGE and CONTINUE. True when the loop should go on (range
    /// adjusted), false when the caller must decide (EFAULT) or give up (region gone).</summary>
    private bool HandleResolveError(ServedRegion r, Errno errno, bool stale, ref ulong start, ref ulong length)
    {
        switch (errno)
        {
            case Errno.EEXIST:
                // The first page is already mapped (a racing resolver or a re-raised fault). It is success, but the
                // failed ioctl woke nobody: wake the page's waiters and go on with the rest.
                ulong step = (ulong)r.PageSize;
                Wake(r, start, step);
                r.Control.Add(stale ? RegionStat.StaleFaults : RegionStat.AlreadyPresent, 1);
                start += step;
                length -= Math.Min(step, length);
                return true;
            case Errno.EAGAIN:
            case Errno.EINTR:
                // The mm is changing (an mremap/munmap in flight). We subscribe to no events, so this clears by itself.
                r.Control.Add(RegionStat.Retries, 1);
                Thread.Yield();
                return true;
            case Errno.ENOENT:
            case Errno.ESRCH:
            case Errno.EINVAL:
                // The range was unregistered or unmapped, or the application exited: nobody is waiting any more.
                length = 0;
                return false;
            case Errno.EFAULT:
                return false;
            default:
                r.Control.Add(RegionStat.Errors, 1);
                Log.ResolveFailed(_logger, length, start, errno);
                Wake(r, start, length);
                length = 0;
                return false;
        }
    }

    // ---------- anonymous: UFFDIO_COPY (or ZEROPAGE) from a buffer ----------

    /// <summary>Installs pages read into <paramref name="buffer"/> (COPY, or ZEROPAGE for all-zero data on anonymous
    /// regions), waking their waiters, then marks them filled. Shmem regions come here when the application fills
    /// pages too (caller fills): no ZEROPAGE there (the kernel has it for anonymous memory only).</summary>
    private void MapAnonymous(ServedRegion r, long first, long count, PageReadStatus status, byte* buffer, bool stale)
    {
        long offset = first << r.PageShift;
        long length = count << r.PageShift;
        if (r.TrackWrites || r.Kind != ArenaKind.Anonymous)
        {
            // Mapped write-protected, so the first write faults to the pager (synchronous tracking). The shared zero
            // page cannot be mapped protected (a write would copy it without a fault): zeros are copied.
            if (status == PageReadStatus.Zero)
            {
                new Span<byte>(buffer, checked((int)length)).Clear();
                status = PageReadStatus.Data;
            }
        }
        else if (status == PageReadStatus.Data && PageCopy.IsZero(buffer, (nuint)length, PageCopy.Best))
        {
            // All-zero data (sparse files, zero-initialised tensors): map the shared zero page instead of copying
            // a page of zeros into a new one. The check reads the bytes just written, still in cache.
            status = PageReadStatus.Zero;
        }
        ulong start = r.Start + (ulong)offset;
        ulong remaining = (ulong)length;
        ulong source = (ulong)buffer;
        long present = 0;
        while (remaining > 0)
        {
            var errno = status == PageReadStatus.Zero
                ? _uffd.ZeroPage(start, remaining, out long done)
                : _uffd.Copy(start, source, remaining, out done, r.TrackWrites);
            if (errno == Errno.None)
            {
                r.Control.Add(RegionStat.Resolutions, 1);
                break;
            }
            if (done > 0)
            {
                start += (ulong)done;
                source += (ulong)done;
                remaining -= (ulong)done;
                continue;
            }
            ulong before = start;
            if (!HandleResolveError(r, errno, stale, ref start, ref remaining))
            {
                return; // the range is gone (unregistered) or the application exited: nothing to mark
            }
            if (errno == Errno.EEXIST)
            {
                present++;
            }
            source += start - before;
        }
        r.Control.Add(RegionStat.PagesFilled, count - present);
        if (status == PageReadStatus.Zero)
        {
            r.Control.Add(RegionStat.ZeroPagesFilled, count);
        }
        r.Control.MarkFilled(first, count);
        if (r.CallerFills)
        {
            // A page a fault brought in gets one turn of the clock, as one the application fetched.
            for (long p = first; p < first + count; p++)
            {
                r.Control.MarkReferenced(p);
            }
        }
    }

    // ---------- the store, and what happens when it fails ----------

    private bool TryRead(ServedRegion r, long offset, Span<byte> destination, out PageReadStatus status)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                status = r.Store.Read(offset, destination);
                if (status == PageReadStatus.Data)
                {
                    CountBytesRead(r, offset, destination.Length);
                }
                return true;
            }
#pragma warning disable CA1031 // A store is user code: whatever it throws becomes a retry or a poisoned page, never a dead pager.
            catch (Exception e)
#pragma warning restore CA1031
            {
                if (IsTransient(e) && attempt < FillAttempts)
                {
                    r.Control.Add(RegionStat.Retries, 1);
                    continue;
                }
                r.Control.Add(RegionStat.Errors, 1);
                Log.StoreReadFailed(_logger, e, r.StoreName, destination.Length, offset, r.Id, attempt);
                status = default;
                return false;
            }
        }
    }

    /// <summary>Counts a read's bytes that lie in the store, in whole pages (as the splice path counts them): a run
    /// reaching past the store's end (read-ahead over the last page) reads zeros there, not the store.</summary>
    internal static void CountBytesRead(ServedRegion r, long offset, long length)
    {
        long known = Volatile.Read(ref r.StoreLengthSeen);
        if (offset + length > known)
        {
            known = r.Store.Length; // only near or past the end (a file store's Length is an fstat)
            Volatile.Write(ref r.StoreLengthSeen, known);
        }
        long inStore = Math.Clamp(known - offset, 0, length);
        long read = Math.Min(length, (inStore + r.PageSize - 1) & ~(long)(r.PageSize - 1));
        if (read > 0)
        {
            r.Control.Add(RegionStat.BytesRead, read);
            PagerMetrics.BytesRead.Add(read);
        }
    }

    private static bool IsTransient(Exception e) => e is PageStoreException { IsTransient: true } or IOException or OperationCanceledException or TimeoutException;

    /// <summary>Fails the faults on pages the store cannot produce: the touching thread gets SIGBUS, which is honest,
    /// where zeros would be a wrong byte and leaving it blocked would be a hang.</summary>
    private void Poison(ServedRegion r, long page, long count)
    {
        ulong start = r.Start + ((ulong)page << r.PageShift), length = (ulong)count << r.PageShift;
        var errno = _uffd.Poison(start, length);
        if (errno == Errno.None)
        {
            r.Control.Add(RegionStat.Poisoned, count);
            return;
        }
        if (errno == Errno.EEXIST)
        {
            return; // mapped meanwhile: nothing waits on it
        }
        Log.PoisonFailed(_logger, count, start, errno);
        Wake(r, start, length);
    }
}
