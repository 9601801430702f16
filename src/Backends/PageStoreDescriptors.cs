using Paging.Stores;

namespace Paging.Backends;

/// <summary>The descriptor factories of the built-in stores, as static members of <see cref="PageStoreDescriptor"/>
/// (C# 14 extension members): <c>PageStoreDescriptor.File(path)</c> reads as if the core had it, while the code
/// lives with the store.</summary>
public static class PageStoreDescriptors
{
    extension(PageStoreDescriptor)
    {
        /// <summary>A page-aligned slice of a file (see <see cref="FilePageStore.Describe"/>).</summary>
        public static PageStoreDescriptor File(string path, long offset = 0, bool writable = false) => FilePageStore.Describe(path, offset, writable);

        /// <summary>Another store with <paramref name="delay"/> added to every read, asynchronously (see
        /// <see cref="LatencyPageStore"/>): a stand-in for a network store in benchmarks and tests.</summary>
        public static PageStoreDescriptor WithLatency(PageStoreDescriptor inner, TimeSpan delay) => LatencyPageStore.Describe(inner, delay);
    }
}
