using Paging.Backends.Network.Http;
using Paging.Backends.Network.S3;
using Paging.Stores;

namespace Paging.Backends.Network;

/// <summary>The network stores' descriptor factories, as static members of <see cref="PageStoreDescriptor"/> (C# 14
/// extension members: <c>PageStoreDescriptor.Http(url)</c>, <c>PageStoreDescriptor.S3(bucket, key)</c>), and their
/// registration in a pager's registry.</summary>
public static class NetworkPageStores
{
    extension(PageStoreDescriptor)
    {
        /// <summary>The object at an http:// or https:// URL, read with range requests (see <see cref="HttpPageStore"/>).</summary>
        public static PageStoreDescriptor Http(Uri url, HttpStoreOptions? options = null) => HttpPageStore.Describe(url, options);

        /// <summary>The object at an http:// or https:// URL, read with range requests (see <see cref="HttpPageStore"/>).</summary>
        public static PageStoreDescriptor Http(string url, HttpStoreOptions? options = null) => HttpPageStore.Describe(new Uri(url, UriKind.Absolute), options);

        /// <summary>An S3 object, read with ranged GETs (see <see cref="S3PageStore"/>).</summary>
        public static PageStoreDescriptor S3(string bucket, string key, S3StoreOptions? options = null) => S3PageStore.Describe(bucket, key, options);
    }

    /// <summary>Adds the "http" and "s3" kinds to <paramref name="registry"/>.</summary>
    public static PageStoreRegistry AddNetworkStores(this PageStoreRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        return registry.Add(HttpPageStore.Kind, HttpPageStore.Create).Add(S3PageStore.Kind, S3PageStore.Create);
    }
}
