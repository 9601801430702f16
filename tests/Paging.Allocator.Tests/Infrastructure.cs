using System.Runtime.InteropServices;
using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>One runtime (with a standby pager) shared by the tests that do not kill pagers.</summary>
public sealed class RuntimeFixture : IDisposable
{
    public PagingRuntime Runtime { get; } = PagingRuntime.Start();

    public void Dispose() => Runtime.Dispose();
}

[CollectionDefinition("runtime")]
public sealed class RuntimeTests : ICollectionFixture<RuntimeFixture>;

/// <summary>Tests whose assertions count faults (batching works) run alone: on 2 vCPUs shared with the GC-stress and
/// pager-kill tests, a descheduled pager makes a reader catch up with read-ahead more often.</summary>
[CollectionDefinition("serial", DisableParallelization = true)]
public sealed class SerialTests : ICollectionFixture<RuntimeFixture>;

internal static unsafe partial class Native
{
    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint address, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    public static partial nint Pwrite(int fd, void* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MemfdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "close")]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "pread", SetLastError = true)]
    public static partial nint Pread(int fd, void* buffer, nuint count, long offset);

    /// <summary>O_DIRECT on x86_64 (0x10000 on arm64).</summary>
    public static int ODirect => System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.Arm64 ? 0x10000 : 0x4000;

    public const int MADV_DONTNEED = 4;
}

internal static class Run
{
    /// <summary>Random 8-byte writes into <paramref name="region"/> from <paramref name="threads"/> threads, recorded in
    /// <paramref name="expected"/> (one word per 8 bytes of the region). Thread t owns the 4 KiB blocks b with
    /// b % threads == t, so the model needs no lock; each value encodes its thread and write number.</summary>
    public static unsafe void RandomWrites(Region region, ulong[] expected, int threads, int writesPerThread, int seed)
    {
        long blocks = region.Length / 4096;
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var rng = new Random(seed + t);
            ulong* words = (ulong*)region.Pointer;
            for (int i = 0; i < writesPerThread; i++)
            {
                long block = rng.NextInt64(blocks / threads) * threads + t;
                long word = block * 512 + rng.Next(512);
                ulong value = ((ulong)t << 56) | ((ulong)i << 20) | (uint)rng.Next(1 << 20);
                words[word] = value;
                expected[word] = value;
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
    }

    /// <summary>Random 4 KiB reads of <paramref name="region"/> (which maps <paramref name="file"/> from offset 0) from
    /// <paramref name="threads"/> threads for <paramref name="milliseconds"/>, every byte checked. Returns the touches
    /// made; throws (through the caller's <see cref="Within"/>) with the first wrong byte.</summary>
    public static long RandomTouchesChecked(Region region, TempFile file, int threads, int milliseconds)
    {
        string? failure = null;
        long touches = 0, deadline = Environment.TickCount64 + milliseconds, pages = region.Length / 4096;
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var rng = new Random(t);
            while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
            {
                long off = rng.NextInt64(pages) * 4096;
                long bad = TestData.FirstMismatch(region.AsSpan(off, 4096), off, file.Length, file.Seed);
                if (bad >= 0)
                {
                    Interlocked.CompareExchange(ref failure, $"thread {t}: wrong byte at offset {off + bad}", null);
                }
                Interlocked.Increment(ref touches);
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        Assert.True(failure is null, failure);
        return touches;
    }

    /// <summary>Writer threads increment word t of random pages (thread t owns word t of every page, counted in the
    /// returned [thread, page] array) while the active pager is SIGKILLed <paramref name="kills"/> times (each after the
    /// standby is ready and the writers made 2,000 more writes), and go on after the last failover; then
    /// <paramref name="flush"/>. <paramref name="page"/> gives a thread the address of a page (through Fetch or a pointer).</summary>
    public static unsafe long[,] IncrementsWhilePagersAreKilled(PagingRuntime runtime, long pages, int threads, int kills, Func<int, long, nint> page, Action flush)
    {
        var counts = new long[threads, pages];
        Within(TimeSpan.FromSeconds(240), () =>
        {
            int done = 0;
            long writes = 0;
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                var rng = new Random(t + 11);
                while (Volatile.Read(ref done) == 0)
                {
                    long p = rng.NextInt64(pages);
                    ((ulong*)page(t, p))[t]++;
                    counts[t, p]++;
                    Interlocked.Increment(ref writes);
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            try
            {
                for (int k = 0; k < kills; k++)
                {
                    PagerCrashTests.WaitFor(() => runtime.StandbyReady, "a standby pager");
                    long before = Interlocked.Read(ref writes);
                    PagerCrashTests.WaitFor(() => Interlocked.Read(ref writes) > before + 2000, "the writers to make progress");
                    runtime.KillActivePager();
                    PagerCrashTests.WaitFor(() => runtime.PagerRestarts > k, "the failover");
                }
                long last = Interlocked.Read(ref writes);
                PagerCrashTests.WaitFor(() => Interlocked.Read(ref writes) > last + 2000, "the writers to go on after the last kill");
            }
            finally
            {
                Volatile.Write(ref done, 1);
                workers.ForEach(w => w.Join());
            }
            flush();
        }, "writers while pagers are killed");
        Assert.Equal(kills, runtime.PagerRestarts);
        return counts;
    }

    /// <summary>Every word t of every page of <paramref name="file"/> holds its original value plus counts[t, page]. A
    /// failure says how many words are wrong and how (one lost write, or whole write-backs missing), not just the first.</summary>
    public static void AssertIncrementsInFile(TempFile file, long[,] counts)
    {
        var onDisk = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path));
        long wrong = 0, pagesWrong = 0, written = 0;
        var first = new List<string>();
        for (long p = 0; p < counts.GetLength(1); p++)
        {
            bool pageWrong = false;
            for (int t = 0; t < counts.GetLength(0); t++)
            {
                long w = p * 512 + t;
                ulong original = TestData.WordAt(w * 8, file.Seed), expected = original + (ulong)counts[t, p];
                written += counts[t, p] > 0 ? 1 : 0;
                if (onDisk[(int)w] != expected)
                {
                    wrong++;
                    pageWrong = true;
                    if (first.Count < 5)
                    {
                        first.Add($"page {p}, thread {t}'s word: {onDisk[(int)w]:x} in the file, expected {expected:x} ({counts[t, p]} increments; {(long)(onDisk[(int)w] - original)} there)");
                    }
                }
            }
            pagesWrong += pageWrong ? 1 : 0;
        }
        Assert.True(wrong == 0, $"{wrong} of {written} written words wrong, in {pagesWrong} pages; the first: {string.Join("; ", first)}");
    }

    /// <summary>Runs <paramref name="body"/> on its own thread and fails the test if it has not finished in
    /// <paramref name="limit"/>: a hang is a failure with a message, not a stuck CI run.</summary>
    public static void Within(TimeSpan limit, Action body, string what)
    {
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { body(); }
            catch (Exception e) { error = e; }
        }) { IsBackground = true, Name = what };
        thread.Start();
        Assert.True(thread.Join(limit), $"{what} did not finish within {limit.TotalSeconds} s (hang)");
        if (error is not null)
        {
            throw new Xunit.Sdk.XunitException($"{what} failed: {error}");
        }
    }

    /// <summary>Reads <paramref name="read"/> until it returns at least <paramref name="expected"/> or 5 s pass, and
    /// returns the last value. For the pager's counters: a fill wakes the faulting thread with its mapping ioctl and
    /// counts the pages just after, so a test that reads them right after its last touch can be a page early.</summary>
    public static long Settled(Func<long> read, long expected)
    {
        long deadline = Environment.TickCount64 + 5000, value;
        while ((value = read()) < expected && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(1);
        }
        return value;
    }

    public static void AssertMatchesFile(ReadOnlySpan<byte> actual, long fileOffset, TempFile file, string what)
    {
        long bad = TestData.FirstMismatch(actual, fileOffset, file.Length, file.Seed);
        Assert.True(bad < 0, $"{what}: first wrong byte at +{bad} (file offset {fileOffset + bad})");
    }

    /// <summary>The Rss of the mapping that starts at <paramref name="address"/>, from /proc/self/smaps.</summary>
    public static long MappingRssKiB(nint address)
    {
        string start = ((long)address).ToString("x", System.Globalization.CultureInfo.InvariantCulture) + "-";
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.Contains('-'))
            {
                inside = line.StartsWith(start, StringComparison.Ordinal);
            }
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                return long.Parse(line[4..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidOperationException($"no mapping starts at 0x{address:x}");
    }

    public static long RssKiB(int pid = 0)
    {
        foreach (var line in File.ReadLines(pid == 0 ? "/proc/self/status" : $"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line[6..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        return -1;
    }
}
