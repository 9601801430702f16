using System.Globalization;
using Paging;
using Paging.Backends;
using Paging.CrashChild;
using Paging.Stores;

// The application the crash tests kill: writes under eviction, flushes, says so on stdout, then keeps writing until
// it is killed with SIGKILL. Usage: Paging.CrashChild <file> <budget bytes> <writes before the flush> <seed> [anonymous]
// (anonymous: an anonymous arena, in a runtime with synchronous write tracking; else shmem).
// Write i (from 0) stores CrashWrites.Value(i, page, slot) at a (page, slot) drawn from CrashWrites.Next.
string path = args[0];
long budget = long.Parse(args[1], CultureInfo.InvariantCulture);
long before = long.Parse(args[2], CultureInfo.InvariantCulture);
ulong rng = ulong.Parse(args[3], CultureInfo.InvariantCulture);
long length = new FileInfo(path).Length;
bool anonymous = args.Length > 4 && args[4] == "anonymous";
using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { WriteTracking = anonymous ? WriteTracking.Synchronous : WriteTracking.Auto });
using var region = runtime.CreateRegion(new RegionOptions
{
    Arena = anonymous ? ArenaKind.Anonymous : ArenaKind.Shmem,
    Length = length,
    Store = PageStoreDescriptor.File(path, writable: true),
    MemoryBudget = budget,
    Prefetch = PrefetchOptions.None,
});
long pages = length / 4096;
unsafe
{
    ulong* words = (ulong*)region.Pointer;
    for (long i = 0; ; i++)
    {
        (long page, int slot) = CrashWrites.Next(ref rng, pages);
        words[page * 512 + slot] = CrashWrites.Value(i, page, slot);
        if (i + 1 == before)
        {
            region.Flush();
            Console.Out.WriteLine($"FLUSHED {region.Statistics.PagesEvicted} {region.Statistics.PagesWrittenBack}");
            Console.Out.Flush();
        }
    }
}
