//go:build !lathe_noazure

package remote

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
)

func init() { drivers["azblob"] = openAzure }

// azureHelp says where azblob:// finds its account and credentials.
const azureHelp = "azblob:// takes the storage account from AZURE_STORAGE_ACCOUNT (or ?storage_account=NAME) and credentials from " +
	"AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING, else from Azure's DefaultAzureCredential " +
	"(AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET, workload identity, managed identity, or `az login`)"

// azureStorageScope is the token scope of Azure Blob Storage.
const azureStorageScope = "https://storage.azure.com/.default"

// openAzure opens an azblob:// container with the credentials of the
// environment, in gocloud's order: shared key, SAS token, connection
// string, DefaultAzureCredential. With the last one it fetches a token
// within credentialTimeout, so that missing credentials fail here, with a
// clear message, rather than at the first read.
func openAzure(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	svc := azureblob.NewDefaultServiceURLOptions()
	account := svc.AccountName
	if a := u.Query().Get("storage_account"); a != "" {
		account = a
	}
	key := os.Getenv("AZURE_STORAGE_KEY")
	conn := os.Getenv("AZURE_STORAGE_CONNECTION_STRING")
	if conn == "" {
		conn = os.Getenv("AZURE_STORAGEBLOB_CONNECTIONSTRING")
	}
	if account == "" {
		return nil, fmt.Errorf("no Azure storage account; %s", azureHelp)
	}
	var makeClient func(azureblob.ServiceURL, azureblob.ContainerName) (*container.Client, error)
	switch {
	case key != "":
		cred, err := container.NewSharedKeyCredential(account, key)
		if err != nil {
			return nil, fmt.Errorf("AZURE_STORAGE_KEY is not a valid shared key (%v); %s", err, azureHelp)
		}
		makeClient = func(svcURL azureblob.ServiceURL, name azureblob.ContainerName) (*container.Client, error) {
			cu, err := url.JoinPath(string(svcURL), string(name))
			if err != nil {
				return nil, err
			}
			return container.NewClientWithSharedKeyCredential(cu, cred, nil)
		}
	case svc.SASToken != "":
		makeClient = func(svcURL azureblob.ServiceURL, name azureblob.ContainerName) (*container.Client, error) {
			cu, err := url.JoinPath(string(svcURL), string(name))
			if err != nil {
				return nil, err
			}
			return container.NewClientWithNoCredential(cu, nil)
		}
	case conn != "":
		makeClient = func(_ azureblob.ServiceURL, name azureblob.ContainerName) (*container.Client, error) {
			return container.NewClientFromConnectionString(conn, string(name), nil)
		}
	default:
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("no Azure credentials: %s; %s", oneLine(err.Error()), azureHelp)
		}
		_, err = withinTimeout(ctx, "Azure credentials", func(ctx context.Context) (struct{}, error) {
			_, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{azureStorageScope}})
			return struct{}{}, err
		})
		if err != nil {
			return nil, fmt.Errorf("no Azure credentials: %s; %s", oneLine(err.Error()), azureHelp)
		}
		makeClient = func(svcURL azureblob.ServiceURL, name azureblob.ContainerName) (*container.Client, error) {
			cu, err := url.JoinPath(string(svcURL), string(name))
			if err != nil {
				return nil, err
			}
			return container.NewClient(cu, cred, nil)
		}
	}
	op := &azureblob.URLOpener{MakeClient: makeClient, ServiceURLOptions: *svc}
	return op.OpenBucketURL(ctx, u)
}

// oneLine folds a multi-line SDK message into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
