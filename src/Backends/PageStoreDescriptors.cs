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
        public static PageStoreDescriptor File(string path, long offset = 0, bool writable = false, bool direct = false, bool? directWhenCold = null) => FilePageStore.Describe(path, offset, writable, direct, directWhenCold);

        /// <summary>Another store with <paramref name="delay"/> added to every read, asynchronously (see
        /// <see cref="LatencyPageStore"/>): a stand-in for a network store in benchmarks and tests.</summary>
        public static PageStoreDescriptor WithLatency(PageStoreDescriptor inner, TimeSpan delay) => LatencyPageStore.Describe(inner, delay);

        /// <summary>The pack (docs/PACK-FORMAT.md) in the file at <paramref name="path"/> (see
        /// <see cref="Compression.CompressedPageStore"/>).</summary>
        public static PageStoreDescriptor Compressed(string path) => Compression.CompressedPageStore.Describe(path);

        /// <summary>A pack whose bytes another store holds (a network store, say).</summary>
        public static PageStoreDescriptor Compressed(PageStoreDescriptor inner) => Compression.CompressedPageStore.Describe(inner);

        /// <summary>A compressed memory tier of <paramref name="capacityBytes"/> in front of <paramref name="inner"/>
        /// (see <see cref="Compression.CompressedTierPageStore"/>): pages the region's memory budget evicts are kept
        /// compressed, and their next fault decompresses them instead of reading the store.</summary>
        public static PageStoreDescriptor CompressedTier(PageStoreDescriptor inner, long capacityBytes, Compression.PageCodecKind codec = Compression.PageCodecKind.Lz4) =>
            Compression.CompressedTierPageStore.Describe(inner, capacityBytes, codec);
    }
}
