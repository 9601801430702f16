using Paging.Testing.Servers;

namespace Paging.Backends.Tests;

/// <summary>The servers and folders the tests and the harness start are tied to the process's life: when the pipe from
/// it closes (which the kernel does when the process dies in any way), the server stops and its folder goes. Closing
/// the pipe by hand is the same event, so it is what these tests do.</summary>
public sealed class LocalServersTests
{
    private static string NewFolderWithAFile()
    {
        string dir = Directory.CreateTempSubdirectory("paging-tie-test-").FullName;
        File.WriteAllBytes(Path.Combine(dir, "data.bin"), new byte[8192]);
        return dir;
    }

    private static bool Gone(string dir)
    {
        for (int i = 0; i < 500 && Directory.Exists(dir); i++)
        {
            Thread.Sleep(10);
        }
        return !Directory.Exists(dir);
    }

    [Fact]
    public void AFolderTiedToTheProcessGoesWhenItsPipeCloses()
    {
        string dir = NewFolderWithAFile();
        try
        {
            var tie = LocalServers.DeleteWhenThisProcessEnds(dir);
            Thread.Sleep(200);
            Assert.True(File.Exists(Path.Combine(dir, "data.bin")), "deleted while the process still runs");
            tie.Dispose();
            Assert.True(Gone(dir), $"{dir} still there 5 s after the pipe closed");
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, true);
            }
        }
    }

    [Fact]
    public void ATiedServerStopsAndItsFolderGoesWhenThePipeCloses()
    {
        string dir = NewFolderWithAFile();
        try
        {
            using var server = LocalServers.StartTied("sleep", ["60"], dir);
            Thread.Sleep(200);
            Assert.False(server.HasExited);
            Assert.True(Directory.Exists(dir));
            server.StandardInput.Close();
            Assert.True(server.WaitForExit(5000), "the tied server still runs 5 s after the pipe closed");
            Assert.True(Gone(dir), $"{dir} still there after the server stopped");
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, true);
            }
        }
    }
}
