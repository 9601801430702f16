using System.Runtime.InteropServices;
using Paging.Stores;

namespace Paging.Backends.Compression;

/// <summary>Loads a codec's shared library and its exports, with an error that says which package provides it.</summary>
internal static class NativeCodecLibrary
{
    public static nint Load(string library, string package)
    {
        if (!NativeLibrary.TryLoad(library, out nint handle))
        {
            throw new PageStoreException(PageStoreError.Configuration,
                $"{library} could not be loaded: install it (Debian: apt-get install {package})");
        }
        return handle;
    }

    public static nint Export(nint library, string name, string libraryName) =>
        NativeLibrary.TryGetExport(library, name, out nint address)
            ? address
            : throw new PageStoreException(PageStoreError.Configuration, $"{libraryName} has no export {name} (too old a version?)");
}
